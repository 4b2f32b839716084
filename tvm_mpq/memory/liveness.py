"""Activation memory from tensor lifetimes over the real layer graph (`--ram-model liveness`).

The method's chain model charges layer i with its own input and output only. On the
device, the activation arena must also hold every tensor that is still waiting for a
later consumer (skip connections), the extra steps of pool/add layers, and the kernels'
scratch buffers. This module computes that need step by step:

    bytes(step s) = sum over tensors t live at s of packed_bytes(n(t), bits(t))
                    + scratch(layer s)            (when a scratch estimate is requested)

A tensor is live at step s when it is produced at a step <= s (the network input counts
as produced before step 0) and its last consumer runs at a step >= s. So the inputs and
the output of layer s are live together (no in-place execution), and a tensor feeding a
later Add stays live across the whole branch in between. The network output is live at
its producing step.

`peak_activation_bytes` is the lower bound for any static arena plan of the same graph
with the same bit widths: at the peak step all those bytes are needed at once.

Precision variables: every weight layer's output is one variable. A pool layer's output
and an add layer's output carry the precision of an input (pool: its input; add: the
input produced last in execution order, i.e. the chain predecessor), so they share that
input's variable. The network input is fixed at 8 bits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .. import ops
from .plan import INPUT_BITS, Plan, packed_bytes


def tensor_sources(graph) -> dict[str, int | None]:
    """tensor id -> index (into `graph.weight_layers`) of the weight layer whose output
    precision the tensor carries; None for the network input (fixed at 8 bits)."""
    src: dict[str, int | None] = {graph.input_name: None}
    produced_at: dict[str, int] = {graph.input_name: -1}
    k = 0
    for step, layer in enumerate(graph.layers):
        if layer.has_weights:
            src[layer.output] = k
            k += 1
        else:
            latest = max(layer.inputs, key=lambda t: produced_at.get(t, -1))
            src[layer.output] = src.get(latest)
        produced_at[layer.output] = step
    return src


def tensor_sizes(graph) -> dict[str, int]:
    """tensor id -> element count."""
    n = 1
    for d in graph.input_shape:
        n *= d
    sizes = {graph.input_name: n}
    for layer in graph.layers:
        sizes[layer.output] = layer.n_out
    return sizes


def lifetimes(graph) -> dict[str, tuple[int, int]]:
    """tensor id -> (first step, last step) during which it occupies memory."""
    life = {graph.input_name: (0, 0)}   # the input is there before step 0
    for step, layer in enumerate(graph.layers):
        for t in layer.inputs:
            life[t] = (life[t][0], step)
        life[layer.output] = (step, step)
    return life


def live_tensors(graph) -> list[list[str]]:
    """For each step (layer index), the tensors live at that step."""
    life = lifetimes(graph)
    return [[t for t, (a, b) in life.items() if a <= s <= b] for s in range(len(graph.layers))]


def scratch_bytes(layer) -> int:
    """Estimated kernel scratch (bytes) of one layer, CMix-NN/CMSIS-NN style: what its
    operator declares (`Operator.plan_scratch_bytes`; e.g. conv: one receptive field of
    im2col in int16; pooling and add: 0)."""
    return ops.for_kind(layer.kind).plan_scratch_bytes(layer)


ScratchFn = Callable[[object], int]


def step_bytes(graph, bits_per_tensor: Mapping[str, int], scratch: bool | ScratchFn = False
               ) -> list[int]:
    """Bytes needed at each step (layer) of `graph` with the given bit width per tensor id
    (missing tensors count at 8 bits). `scratch`: False (tensors only), True (add
    `scratch_bytes`) or a function layer -> bytes."""
    fn = scratch_bytes if scratch is True else scratch or None
    sizes = tensor_sizes(graph)
    live = live_tensors(graph)
    out = []
    for s, layer in enumerate(graph.layers):
        total = sum(packed_bytes(sizes[t], bits_per_tensor.get(t, 8)) for t in live[s])
        if fn is not None:
            total += fn(layer)
        out.append(total)
    return out


def peak_activation_bytes(graph, bits_per_tensor: Mapping[str, int],
                          scratch: bool | ScratchFn = False) -> int:
    """The largest `step_bytes`: the activation memory a static plan cannot go below."""
    return max(step_bytes(graph, bits_per_tensor, scratch))


def tensor_bits(graph, plan: Plan) -> dict[str, int]:
    """tensor id -> bits under `plan` (for every activation tensor of `graph`)."""
    out_bits = [lp.out_bits for lp in plan.layers]
    return {t: (plan.input_bits if k is None else out_bits[k])
            for t, k in tensor_sources(graph).items()}


def uniform_bits(graph, bits: int = INPUT_BITS) -> dict[str, int]:
    """Every activation tensor at `bits`."""
    return {t: bits for t in tensor_sizes(graph)}
