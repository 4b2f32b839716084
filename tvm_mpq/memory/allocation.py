"""Memory-driven mixed-precision bit allocation (Rusci et al., MLSys 2020, section 1 of
the method notes; docs/plan.md).

Every weight and activation tensor starts at 8 bits and is only ever halved (8 -> 4 -> 2).
The network input and the logits (the last weight layer's output) stay at 8 bits.

1. Activations are cut until the RAM model fits `ram_bytes`:
   - `chain` (the paper's): mem_i = in_i + out_i bytes of weight layer i, cut with
     alternating forward/backward sweeps (`_cut_activations_chain`);
   - `liveness` (beyond the paper): the peak over all steps of the bytes of live tensors
     plus kernel scratch (`memory.liveness`), cut greedily at the peak step
     (`_cut_activations_liveness`).
2. Weights are cut until weights + quantization parameters fit `flash_bytes`: the
   biggest layers (within `DELTA` of the largest share) closest to the input first.

Deterministic: no randomness, no dict-order or float-rounding dependence (the threshold
test is done in integers).
"""

from __future__ import annotations

from ..errors import BudgetError, MpqError
from ..units import format_size
from .liveness import live_tensors, scratch_bytes, step_bytes, tensor_sizes, tensor_sources
from .plan import (
    INPUT_BITS,
    RAM_MODELS,
    SCHEMES,
    LayerPlan,
    Plan,
    packed_bytes,
    param_bytes,
    uses_icn,
)

DELTA_PERCENT = 5          # delta = 0.05 of the weight-share threshold
MIN_BITS = 2


class _State:
    """The precision variables: q[k] = output bits of weight layer k (the logits, k = L-1,
    are fixed); in_var[k] = the variable carried by layer k's input (None = the image)."""

    def __init__(self, graph):
        self.graph = graph
        self.wl = graph.weight_layers
        if not self.wl:
            raise MpqError(f"model '{graph.name}' has no conv or linear layer to plan")
        self.L = len(self.wl)
        self.src = tensor_sources(graph)
        self.in_var = [self.src[layer.inputs[0]] for layer in self.wl]
        self.q = [INPUT_BITS] * self.L
        self.w = [8] * self.L

    def bits(self, var) -> int:
        return INPUT_BITS if var is None else self.q[var]

    def cuttable(self, var) -> bool:
        return var is not None and var != self.L - 1

    def tensor_bits(self) -> dict[str, int]:
        return {t: self.bits(k) for t, k in self.src.items()}


# ---------------------------------------------------------------------------------------
# Activations, chain model.

def _chain_mem(st: _State, i: int, qin: int | None = None, qout: int | None = None) -> int:
    layer = st.wl[i]
    qin = st.bits(st.in_var[i]) if qin is None else qin
    qout = st.q[i] if qout is None else qout
    return packed_bytes(layer.n_in, qin) + packed_bytes(layer.n_out, qout)


def _chain_min_mem(st: _State, i: int) -> int:
    qin = MIN_BITS if st.cuttable(st.in_var[i]) else INPUT_BITS
    qout = MIN_BITS if st.cuttable(i) else INPUT_BITS
    return _chain_mem(st, i, qin, qout)


def _chain_infeasible(st: _State, ram: int) -> BudgetError:
    worst = max(range(st.L), key=lambda i: (_chain_min_mem(st, i), -i))
    return BudgetError(
        f"RAM budget {format_size(ram)} cannot be met: layer '{st.wl[worst].name}' needs at "
        f"least {format_size(_chain_min_mem(st, worst))} with all cuttable activations at 2 "
        f"bits (chain model; the image input and the logits stay at 8 bits)")


def _cut_activations_chain(st: _State, ram: int) -> None:
    """Forward (0..L-1) and backward (L-1..0) sweeps, alternating, until a sweep defers
    nothing. Layer i over budget: a layer whose input is fixed (the first) halves its
    output in forward sweeps; a layer whose output is fixed (the last) halves its input in
    backward sweeps; any other layer halves the tensor with more bits (tie: the input if
    n_in*Qin > n_out*Qout, else the output), outputs only in forward sweeps, inputs only in
    backward sweeps; a cut not allowed in this sweep is deferred to the next one."""
    forward = True
    for _ in range(8 * st.L + 8):           # each sweep pair cuts at least once; 2 cuts/var
        deferred = False
        order = range(st.L) if forward else range(st.L - 1, -1, -1)
        for i in order:
            vin = st.in_var[i]
            in_fixed, out_fixed = not st.cuttable(vin), not st.cuttable(i)
            while _chain_mem(st, i) > ram:
                qin, qout = st.bits(vin), st.q[i]
                if in_fixed and out_fixed:
                    raise _chain_infeasible(st, ram)
                if in_fixed:
                    cut = "out"
                    if qout == MIN_BITS:
                        raise _chain_infeasible(st, ram)
                elif out_fixed:
                    cut = "in"
                    if qin == MIN_BITS:
                        raise _chain_infeasible(st, ram)
                else:
                    if qin == qout == MIN_BITS:
                        raise _chain_infeasible(st, ram)
                    if qin != qout:
                        cut = "in" if qin > qout else "out"
                    else:
                        layer = st.wl[i]
                        cut = "in" if layer.n_in * qin > layer.n_out * qout else "out"
                if cut == "out" and forward:
                    st.q[i] //= 2
                elif cut == "in" and not forward:
                    st.q[vin] //= 2
                else:
                    deferred = True
                    break
        if not deferred:
            return
        forward = not forward
    raise AssertionError("activation sweeps did not converge")  # pragma: no cover


# ---------------------------------------------------------------------------------------
# Activations, liveness model.

def _cut_activations_liveness(st: _State, ram: int) -> list[int]:
    """While the peak step is over budget: among the precision variables of the tensors
    live at the (first) peak step that can still be cut, halve the one with the most bits;
    ties go to the one holding the most bytes at that step (the chain rule's n*Q
    comparison), then to the later-produced one (the chain rule's output preference).
    Then undo, newest first, every cut that is no longer needed (a later cut elsewhere may
    have made an earlier one redundant). Returns the final per-step bytes."""
    graph = st.graph
    sizes = tensor_sizes(graph)
    live = live_tensors(graph)

    def steps_now() -> list[int]:
        return step_bytes(graph, st.tensor_bits(), scratch_bytes)

    cuts: list[int] = []
    while True:
        steps = steps_now()
        peak = max(steps)
        if peak <= ram:
            break
        s = steps.index(peak)
        held: dict[int, int] = {}
        for t in live[s]:
            k = st.src[t]
            if st.cuttable(k) and st.q[k] > MIN_BITS:
                held[k] = held.get(k, 0) + packed_bytes(sizes[t], st.q[k])
        if not held:
            raise _liveness_infeasible(st, ram)
        k = max(held, key=lambda v: (st.q[v], held[v], v))
        st.q[k] //= 2
        cuts.append(k)
    for k in reversed(cuts):                 # undoing only adds bytes: one pass suffices
        st.q[k] *= 2
        if max(steps_now()) > ram:
            st.q[k] //= 2
    return steps_now()


def _liveness_infeasible(st: _State, ram: int) -> BudgetError:
    graph = st.graph
    lowest = {t: (INPUT_BITS if not st.cuttable(k) else MIN_BITS) for t, k in st.src.items()}
    steps = step_bytes(graph, lowest, scratch_bytes)
    s = max(range(len(steps)), key=lambda i: (steps[i], -i))
    layer = graph.layers[s]
    return BudgetError(
        f"RAM budget {format_size(ram)} cannot be met: at layer '{layer.name}' the live "
        f"activations plus {format_size(scratch_bytes(layer))} scratch need at least "
        f"{format_size(steps[s])} with all cuttable activations at 2 bits (liveness model; "
        f"the image input and the logits stay at 8 bits)")


# ---------------------------------------------------------------------------------------
# Weights.

def _flash_total(st: _State, scheme: str, w: list[int] | None = None) -> int:
    w = st.w if w is None else w
    return sum(packed_bytes(layer.n_weights, w[i])
               + param_bytes(scheme, layer.out_channels, w[i], st.q[i])
               for i, layer in enumerate(st.wl))


def _cut_weights(st: _State, scheme: str, flash: int) -> None:
    """While weights + parameters exceed `flash`: r_i = layer i's weight bytes / all
    weight bytes, over the layers still above 2 bits; thr = max r - 0.05; halve the layer
    with the smallest index with r > thr. Parameter bytes are recomputed every round
    (MixPL: a cut layer switches from folded batch-norm to ICN)."""
    while _flash_total(st, scheme) > flash:
        cand = [i for i in range(st.L) if st.w[i] > MIN_BITS]
        if not cand:
            raise _flash_infeasible(st, scheme, flash)
        wb = [packed_bytes(layer.n_weights, st.w[i]) for i, layer in enumerate(st.wl)]
        total = sum(wb)
        top = max(wb[i] for i in cand)
        # r_j > max r - delta  <=>  100*wb_j > 100*top - DELTA_PERCENT*total  (exact)
        j = next(i for i in cand if 100 * wb[i] > 100 * top - DELTA_PERCENT * total)
        st.w[j] //= 2


def _flash_infeasible(st: _State, scheme: str, flash: int) -> BudgetError:
    low = [MIN_BITS] * st.L
    per_layer = [packed_bytes(layer.n_weights, MIN_BITS)
                 + param_bytes(scheme, layer.out_channels, MIN_BITS, st.q[i])
                 for i, layer in enumerate(st.wl)]
    big = max(range(st.L), key=lambda i: (per_layer[i], -i))
    return BudgetError(
        f"FLASH budget {format_size(flash)} cannot be met: weights and quantization "
        f"parameters need {format_size(_flash_total(st, scheme, low))} with all weights at 2 "
        f"bits ({scheme}; largest: layer '{st.wl[big].name}' with "
        f"{format_size(per_layer[big])})")


# ---------------------------------------------------------------------------------------

def default_ram_model(graph) -> str:
    """The paper's chain model for a chain of layers; the liveness model for any other
    graph (residual adds, branches), where in + out of one layer undercounts the RAM."""
    return "chain" if graph.is_chain else "liveness"


def allocate(graph, flash_bytes: int, ram_bytes: int, scheme: str = "mixpc",
             ram_model: str | None = None) -> Plan:
    """The bit allocation of `graph` (a `LayerGraph`) for the budgets; `BudgetError`
    (one line: the smallest reachable footprint and the blocking layer) if impossible.
    `ram_model` None: `default_ram_model(graph)`."""
    ram_model = ram_model or default_ram_model(graph)
    if scheme not in SCHEMES:
        raise MpqError(f"unknown scheme '{scheme}' (choose {' or '.join(SCHEMES)})")
    if ram_model not in RAM_MODELS:
        raise MpqError(f"unknown RAM model '{ram_model}' (choose {' or '.join(RAM_MODELS)})")
    for what, v in (("FLASH", flash_bytes), ("RAM", ram_bytes)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise MpqError(f"{what} budget must be a positive number of bytes, got {v!r}")
    st = _State(graph)
    if ram_model == "chain":
        _cut_activations_chain(st, ram_bytes)
        act = [_chain_mem(st, i) for i in range(st.L)]
        rw = max(act)
    else:
        steps = _cut_activations_liveness(st, ram_bytes)
        index = {layer.name: s for s, layer in enumerate(graph.layers)}
        act = [steps[index[layer.name]] for layer in st.wl]
        rw = max(steps)
    _cut_weights(st, scheme, flash_bytes)

    layers = []
    for i, layer in enumerate(st.wl):
        vin = st.in_var[i]
        layers.append(LayerPlan(
            name=layer.name, kind=layer.kind, in_bits=st.bits(vin), out_bits=st.q[i],
            w_bits=st.w[i], icn=uses_icn(scheme, st.w[i], st.q[i]),
            per_channel=scheme == "mixpc", n_weights=layer.n_weights,
            out_channels=layer.out_channels,
            weight_bytes=packed_bytes(layer.n_weights, st.w[i]),
            param_bytes=param_bytes(scheme, layer.out_channels, st.w[i], st.q[i]),
            act_bytes=act[i], in_from=None if vin is None else st.wl[vin].name,
            n_in=layer.n_in, n_out=layer.n_out))
    plan = Plan(model=graph.name, scheme=scheme, ram_model=ram_model, flash_bytes=flash_bytes,
                ram_bytes=ram_bytes, ro_bytes=sum(lp.flash_bytes for lp in layers),
                rw_bytes=rw, layers=layers)
    assert plan.ro_bytes <= flash_bytes and plan.rw_bytes <= ram_bytes
    return plan


def footprint_8bit(graph, scheme: str = "mixpc", ram_model: str | None = None
                   ) -> tuple[int, int]:
    """(ro_bytes, rw_bytes) with every tensor at 8 bits."""
    ram_model = ram_model or default_ram_model(graph)
    st = _State(graph)
    ro = _flash_total(st, scheme)
    if ram_model == "chain":
        rw = max(_chain_mem(st, i) for i in range(st.L))
    else:
        rw = max(step_bytes(graph, st.tensor_bits(), scratch_bytes))
    return ro, rw
