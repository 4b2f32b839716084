"""The precision plan as the quantizers see it (schema "tvm-mpq.plan/1").

`read_plan` loads a plan file (through `tvm_mpq.memory.plan.load_plan`); `layer_configs`
checks a plan dict against a `TorchNet` (any layer DAG: every layer's input bits are those
of the weight layer its input tensor carries, memory.liveness.tensor_sources) and returns
one `LayerQ` per weight layer.
`make_plan` writes plans by hand (tests, benches): it is not the memory-driven allocator
(`memory.allocation.allocate`), only a way to state bit widths explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import PlanError
from .torch_model import INPUT_BITS, TorchNet

SCHEMA = "tvm-mpq.plan/1"
BITS = (8, 4, 2)
SCHEMES = ("mixpl", "mixpc")
LOGIT_BITS = 8


@dataclass(frozen=True)
class LayerQ:
    name: str
    kind: str
    in_bits: int
    out_bits: int
    w_bits: int
    icn: bool
    per_channel: bool


def read_plan(path: str, graph=None) -> dict:
    """Plan file -> plan dict, validated by `tvm_mpq.memory.plan.load_plan` (and checked
    against `graph`, a LayerGraph, when given)."""
    from ..memory.plan import load_plan

    return load_plan(path, graph).to_json()


def layer_configs(plan: dict, net: TorchNet) -> dict[str, LayerQ]:
    """Check `plan` against `net` and return {layer name: LayerQ} for its weight layers."""
    if plan.get("scheme") not in SCHEMES:
        raise PlanError(f"plan scheme {plan.get('scheme')!r} is not one of {', '.join(SCHEMES)}")
    entries = plan.get("layers")
    if not isinstance(entries, list):
        raise PlanError("plan has no 'layers' list")
    by_name = {}
    for e in entries:
        if not isinstance(e, dict) or "name" not in e:
            raise PlanError(f"plan layer entry without a name: {e!r}"[:200])
        by_name[e["name"]] = e
    wanted = [m for m in net.weight_layers()]
    missing = [m.name for m in wanted if m.name not in by_name]
    names = {m.name for m in net.layers}
    extra = [n for n in by_name if n not in names]
    if missing or extra:
        what = []
        if missing:
            what.append(f"no entry for layer(s) {', '.join(missing[:4])}")
        if extra:
            what.append(f"unknown layer(s) {', '.join(extra[:4])}")
        raise PlanError(f"plan for model '{plan.get('model')}' does not match model "
                        f"'{net.name}': {'; '.join(what)}",
                        hint="make the plan for this model with `tvm-mpq plan`")
    if plan.get("model") != net.name:
        raise PlanError(f"the plan is for model '{plan.get('model')}', not '{net.name}'",
                        hint="make the plan for this model with `tvm-mpq plan`")
    from ..memory.liveness import tensor_sources

    cfg: dict[str, LayerQ] = {}
    if int(plan.get("input_bits", INPUT_BITS)) != INPUT_BITS:
        raise PlanError(f"plan input_bits {plan.get('input_bits')}: the network input is "
                        "always 8 bits")
    src = tensor_sources(net)             # tensor id -> weight layer whose bits it carries
    wl = net.weight_layers()

    def bits_of(tensor: str) -> tuple[int, str]:
        """(bits, where they come from: a format string of the bits) of an input tensor."""
        k = src[tensor]
        if k is None:
            return INPUT_BITS, "the network input is {} bits"
        return cfg[wl[k].name].out_bits, "the previous layer outputs {} bits " + \
            f"('{wl[k].name}')"

    for m in net.layers:
        e = by_name.get(m.name)
        prev_out, what = bits_of(m.inputs[0])
        if not m.has_weights:
            if e is not None and e.get("in_bits", prev_out) != prev_out:
                raise PlanError(f"plan layer '{m.name}': in_bits {e.get('in_bits')} but "
                                + what.format(prev_out))
            continue
        try:
            q = LayerQ(m.name, e.get("kind", m.kind), int(e["in_bits"]), int(e["out_bits"]),
                       int(e["w_bits"]), bool(e["icn"]), bool(e["per_channel"]))
        except (KeyError, TypeError, ValueError) as err:
            raise PlanError(f"plan layer '{m.name}': missing or bad field {err}") from None
        if q.kind != m.kind:
            raise PlanError(f"plan layer '{m.name}' is a {q.kind} but the model has a {m.kind}")
        for key, have in (("n_weights", m.weight.numel()), ("out_channels", m.out_channels)):
            if key in e and e[key] != have:
                raise PlanError(f"plan layer '{m.name}': {key} {e[key]}, the model has {have}")
        for field in ("in_bits", "out_bits", "w_bits"):
            if getattr(q, field) not in BITS:
                raise PlanError(f"plan layer '{m.name}': {field} {getattr(q, field)} not in "
                                f"{{8, 4, 2}}")
        if q.in_bits != prev_out:
            raise PlanError(f"plan layer '{m.name}': in_bits {q.in_bits} but "
                            + what.format(prev_out))
        cfg[m.name] = q
    k = src[net.output_name]
    if k is not None and cfg[wl[k].name].out_bits != LOGIT_BITS:
        raise PlanError(f"plan layer '{wl[k].name}': the logits must stay at 8 bits")
    return cfg


def make_plan(graph, scheme: str = "mixpl", w_bits: dict[str, int] | None = None,
              out_bits: dict[str, int] | None = None, icn: dict[str, bool] | None = None
              ) -> dict:
    """A plan for `graph` (a LayerGraph) with 8 bits everywhere except the given per-layer
    `w_bits` / `out_bits` (the logits stay at 8 bits).

    MixPL uses ICN on layers with w_bits < 8 or out_bits < 8 and folding elsewhere; MixPC
    per-channel weights and ICN everywhere. `icn` overrides the choice per layer (folding
    a sub-8-bit layer is outside the plan schema: such a plan serves experiments only and
    `memory.plan.load_plan` rejects it). Sizes follow `memory.plan`'s chain model."""
    from ..memory.liveness import tensor_sources
    from ..memory.plan import LayerPlan, Plan, packed_bytes, param_bytes, uses_icn

    if scheme not in SCHEMES:
        raise ValueError(scheme)
    w_bits, out_bits, icn = dict(w_bits or {}), dict(out_bits or {}), dict(icn or {})
    wl = graph.weight_layers
    unknown = (set(w_bits) | set(out_bits) | set(icn)) - {layer.name for layer in wl}
    if unknown:
        raise ValueError(f"not weight layers of {graph.name}: {sorted(unknown)}")
    src = tensor_sources(graph)
    layers: list[LayerPlan] = []
    for i, layer in enumerate(wl):
        k = src[layer.inputs[0]]
        qin = INPUT_BITS if k is None else layers[k].out_bits
        qo = LOGIT_BITS if i == len(wl) - 1 else out_bits.get(layer.name, 8)
        qw = w_bits.get(layer.name, 8)
        use_icn = True if scheme == "mixpc" else icn.get(layer.name, uses_icn(scheme, qw, qo))
        layers.append(LayerPlan(
            name=layer.name, kind=layer.kind, in_bits=qin, out_bits=qo, w_bits=qw,
            icn=use_icn, per_channel=scheme == "mixpc", n_weights=layer.n_weights,
            out_channels=layer.out_channels, weight_bytes=packed_bytes(layer.n_weights, qw),
            param_bytes=param_bytes(scheme, layer.out_channels, qw, qo, use_icn),
            act_bytes=packed_bytes(layer.n_in, qin) + packed_bytes(layer.n_out, qo),
            in_from=None if k is None else wl[k].name, n_in=layer.n_in, n_out=layer.n_out))
    ro = sum(lp.flash_bytes for lp in layers)
    rw = max(lp.act_bytes for lp in layers)
    return Plan(model=graph.name, scheme=scheme, ram_model="chain", flash_bytes=ro,
                ram_bytes=rw, ro_bytes=ro, rw_bytes=rw, layers=layers).to_json()
