"""The tuning task of one layer: a TIR workload and its MetaSchedule design space.

The workload is the layer's dot-product nest as TE, acc[p, o] = sum_k x[p, k] * w[o, k]
(p: output pixels, o: output channels, k: im2col slots), with the layer's KernelSpec
attached as the PrimFunc attribute `mpq.spec` (so two layers share a task, and a database
entry, exactly when their tuning keys are equal).

The design space (`schedule_fn`) samples one of the layer's valid schedules (`points`:
every combination of `kernel_dsp.schedule_space`'s knobs its constraints allow, so no
candidate is wasted on an impossible one) with `Schedule.sample_categorical`, and applies
it to the nest as the fast kernel realizes it: p split by `pix` (im2col columns a step),
o by `ch` (channels a micro-kernel call), k by `unroll`, reordered (po, oo, ko, pi, oi,
ki), the decision annotated on the block as `mpq.point`. The features XGBoost learns from
are those of this scheduled nest; the builder (`engine.py`) reads the annotation and
generates the fast kernel with that schedule. A `MutateKnob` mutator moves the decision
to another point.
"""

from __future__ import annotations

import dataclasses
import json

from .. import tvm_adapter as ta
from ..codegen import kernel_dsp
from ..codegen.kernels import KernelSpec

BLOCK = "acc"


def tuning_spec(spec: KernelSpec) -> KernelSpec:
    """The spec that identifies a tuning task: what shapes the kernel's instruction count
    (kind, shapes, bits, signs, rounding variant), with zero points, clamp range,
    accumulator shift, name and schedule reset. Layers with equal tuning specs are tuned
    once."""
    return dataclasses.replace(spec, z_in=0, z_out=0, q_min=None, q_max=None, acc_shift=0,
                               suffix="", schedule=(), dsp=True)


def tuning_key(spec: KernelSpec) -> str:
    return tuning_spec(spec).digest()


def spec_to_json(spec: KernelSpec) -> str:
    return json.dumps(dataclasses.asdict(spec), sort_keys=True)


def spec_from_json(text: str) -> KernelSpec:
    d = json.loads(text)
    for k in ("in_shape", "out_shape"):
        d[k] = tuple(d[k])
    d["schedule"] = tuple(tuple(kv) for kv in d.get("schedule", ()))
    return KernelSpec(**d)


def tunable(spec: KernelSpec) -> bool:
    """Whether the layer's fast kernel has schedule knobs."""
    return bool(kernel_dsp.schedule_space(spec))


def _nest(spec: KernelSpec) -> tuple[int, int, int]:
    if kernel_dsp.layout(spec) == "gemm":
        _, n_slots, _ = kernel_dsp.gemm_layout(spec.with_schedule({}))
        _, _, _, ho, wo, cout, _, _, _ = kernel_dsp._dims(spec)
        return ho * wo, cout, n_slots
    _, ho, wo, c = spec.out_shape
    return ho * wo, c, spec.kernel * spec.kernel


def workload(spec: KernelSpec):
    """The layer's TIR workload (a PrimFunc named `main` carrying `mpq.spec`)."""
    te = ta.te()
    key_spec = tuning_spec(spec)
    n_p, n_o, n_k = _nest(key_spec)
    x = te.placeholder((n_p, n_k), "int16", name="x")
    w = te.placeholder((n_o, n_k), "int16", name="w")
    r = te.reduce_axis((0, n_k), name="k")
    acc = te.compute((n_p, n_o), lambda p, o: te.sum(
        x[p, r].astype("int32") * w[o, r].astype("int32"), axis=r), name=BLOCK)
    func = te.create_prim_func([x, w, acc])
    func = func.with_attr("global_symbol", "main")
    return func.with_attr("mpq.spec", spec_to_json(key_spec))


def spec_of_mod(mod) -> KernelSpec:
    func = mod["main"]
    return spec_from_json(str(func.attrs["mpq.spec"]))


def points(spec: KernelSpec) -> list[dict[str, int]]:
    """Every valid complete schedule of the layer (`kernel_dsp.schedule_space` under its
    constraints), the default first, then in the space's order."""
    import itertools

    sp = kernel_dsp.schedule_space(spec)
    default = kernel_dsp.resolve_schedule(dataclasses.replace(spec, schedule=()))
    pts = [dict(zip(sp, vals)) for vals in itertools.product(*sp.values())
           if kernel_dsp.valid_schedule(spec, dict(zip(sp, vals)))]
    return sorted(pts, key=lambda pt: pt != default)


def schedule_fn(sch) -> None:
    """MetaSchedule design space of a layer (see the module docstring)."""
    spec = spec_of_mod(sch.mod)
    pts = points(spec)
    block = sch.get_sblock(BLOCK)
    p, o, k = sch.get_loops(block)
    n = len(pts)
    rv = sch.sample_categorical(list(range(n)), [1.0 / n] * n)
    sched = pts[int(sch.get(rv))]
    outer, inner = [], []
    for loop, knob in ((p, "pix"), (o, "ch"), (k, "unroll")):
        if knob in sched:
            a, b = sch.split(loop, [None, sched[knob]])
            outer.append(a)
            inner.append(b)
        else:
            outer.append(loop)
    sch.reorder(*outer, *inner)
    sch.annotate(block, "mpq.point", rv)


def schedule_of_mod(mod) -> dict[str, int]:
    """The schedule a scheduled workload stands for (its `mpq.point` decision)."""
    sch = ta.schedule_class()(mod)
    block = sch.get_sblock(BLOCK)
    ann = sch.get(block).annotations
    return dict(points(spec_of_mod(mod))[int(ann["mpq.point"])])


