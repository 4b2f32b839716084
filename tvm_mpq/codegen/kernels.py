"""The firmware's kernel generator: one plain-C function per integer layer, from TVM TIR.

    spec = KernelSpec(kind="conv", in_shape=(1, 7, 7, 5), out_shape=(1, 7, 7, 3), kernel=3,
                      stride=1, pad=1, in_bits=8, out_bits=4, w_bits=2, z_in=3, suffix="l3")
    k = generate_kernel(spec)        # Kernel(name, c_source, scratch_bytes, prototype)
    consts = pack_params(spec, w, w_zero, bias, m0, n0)   # {"w": ("uint8_t", b"..."), ...}

The C comes from TVM's own code generator (TE -> s_tir.Schedule -> TIR -> target "c",
lowered without the packed API: `tir_to_c.py`); the same spec gives the same bytes. The
integer semantics are those of `tvm_mpq.reference.ops`, bit for bit.

Layouts (batch 1; packing as in `reference/packing.py`: element 0 in the low bits, every
row starts on a byte boundary, a row of n elements takes ceil(n * bits / 8) bytes, unused
high bits of the last byte are zero):
- activations: NHWC, one row per pixel (packed along C); the linear layer's input is one
  row of K elements and its output one row of N elements. Signed activations (q_min < 0,
  e.g. int8 logits) are two's complement in their bits. The add's output has the shape
  of its inputs.
- conv / pointwise weights: OHWI packed along I (one row per (o, kh, kw)); when an output
  channel's weights are not a whole number of 32-bit words, 3 zero bytes follow the last
  (the fast kernels read a row's partial last word whole; the extra slots meet zeros);
  depthwise weights: (KH, KW, C) packed along C; linear weights: (N, K) packed along K.
  Grouped convs: OHWI with I = C_in / group; depthwise with a channel multiplier m:
  (KH, KW, C_out), output channel o reading input channel o // m (ops/conv2d.py).
- conv geometry: `kernel`, `stride`, `pad` for square kernels, equal strides and one pad;
  otherwise the late fields `kernel_hw` (kh, kw), `strides` (sh, sw), `pads` (t, l, b, r)
  hold it (and `kernel`, `stride`, `pad` their first values; `geometry` gives all eight);
  `group` the groups of a conv. A square, symmetric geometry given through the late fields
  is canonicalized to the ints, so its spec (name, digest, C) is the one it always was.
  Weights are unsigned or two's complement (`w_signed`), with a zero point per output
  channel (`w_zero`; per-layer quantization repeats one value).
- per-channel parameters: bias int32[Cout], m0 int32[Cout], n0 int8[Cout],
  w_zero int8[Cout] (signed weights) or uint8[Cout] (unsigned); avg_pool: m0 int32[1], n0 int8[1].
- scalars (z_in, z_out, q_min, q_max, stride, pad, shapes, z_a, z_b, k_a, k_b, shift)
  are constants in the C.

C ABI (every kernel returns 0; no scratch, no globals, no TVM runtime; stack use is a few
scalars and at most 8 int32 accumulators):
    int32_t mpq_<kind>_<in>_<out>_w<w>_<suffix>(const uint8_t *x, const uint8_t *w,
        const int8_t|uint8_t *w_zero, const int32_t *bias, const int32_t *m0, const int8_t *n0,
        uint8_t *y);                                 kind: conv2d, pointwise, depthwise, linear
    int32_t mpq_avg_pool_<in>_<out>_<suffix>(const uint8_t *x, const int32_t *m0,
        const int8_t *n0, uint8_t *y);
    int32_t mpq_add_<a>_<out>_<suffix>(const uint8_t *a, const uint8_t *b, uint8_t *y);
Fast kernels (spec.dsp, the default; `kernel_dsp.py`, include/mpq_dsp*.h): conv, pointwise,
linear and the 3x3 row depthwise kernel take a trailing `uint8_t *scratch`
(Kernel.scratch_bytes: im2col columns or the ring of widened input rows; 8-byte aligned,
contents undefined on entry; aot.py places it in the static memory plan for its layer step
only); other depthwise kernels take none. dsp=False (or TVM_MPQ_PLAIN_KERNELS=1) gives the plain kernels.
<in>/<out> read u8, s8, u4, s4, u2, s2 (signedness, bits); w<w> is w8/w4/w2 for unsigned and
ws8/ws4/ws2 for two's-complement weights; <suffix> is `spec.suffix` made a C identifier, or
8 hex digits of the spec's hash when empty (identical layers then share one kernel).
`y` must not alias an input. The add's inputs may differ in bits and sign (`in_bits`,
`in_signed` for a; `b_bits`, `b_signed` for b); `from_relax_call` reads them from the
call's `a_bits` / `b_bits` attributes when present (else `in_bits` for both) and from the
argument dtypes. The C assumes an arithmetic right shift of negative integers (gcc,
clang and armcc all do; C99 leaves it implementation-defined).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..reference.packing import BITS
from .. import ops
from . import kernel_dsp
from .tir_to_c import lower_to_c

DSP_INCLUDE = Path(__file__).parent / "include"
# `TVM_MPQ_PLAIN_KERNELS=1` makes specs default to the plain kernels (bench before/after)
PLAIN_ENV = "TVM_MPQ_PLAIN_KERNELS"

@dataclass(frozen=True)
class KernelSpec:
    """Everything that shapes one kernel's C. Shapes: NHWC (1, H, W, C) or (1, K)."""

    kind: str
    in_shape: tuple
    out_shape: tuple
    kernel: int = 1
    stride: int = 1
    pad: int = 0
    in_bits: int = 8
    out_bits: int = 8
    w_bits: int = 8
    in_signed: bool = False
    out_signed: bool = False
    w_signed: bool = False
    z_in: int = 0
    z_out: int = 0
    q_min: int | None = None        # None: the full range of out_bits / out_signed
    q_max: int | None = None
    z_a: int = 0                    # add: y = ((a-z_a) k_a + (b-z_b) k_b + 2^(shift-1)) >> shift
    z_b: int = 0
    k_a: int = 0
    k_b: int = 0
    shift: int = 1
    acc_shift: int = 0              # bias fractional bits: (acc << acc_shift) + bias
    ties: bool = True               # False: m0/n0 make exact ties impossible
                                    # (reference.icn.ties_possible): cheaper rounding
    shift_hi: bool = False          # every n0 <= -2 (multipliers < 1/4): the fast kernels'
                                    # requantization needs only the product's high word
    b_bits: int | None = None       # add: the second input's bits / sign (default: in_*)
    b_signed: bool | None = None
    suffix: str = ""
    schedule: tuple = ()            # fast kernels: ((knob, value), ...) over the defaults of
                                    # kernel_dsp.schedule_space (tuning records set it)
    dsp: bool | None = None         # fast kernel with DSP micro-kernels (None: True unless
                                    # the environment sets TVM_MPQ_PLAIN_KERNELS=1)
    # Fields added after the C of existing kernels was pinned; the banner and the digest
    # list them only when set (`_fields`), so kernels that do not use them keep their bytes.
    window: tuple = ()              # max pool: (kh, kw, sh, sw, pt, pl, pb, pr, ceil_mode)
    requant: bool = False           # max pool: requantize (input and output scales differ)
    b_shape: tuple = ()             # mul: the second input's NHWC shape (broadcast over H, W)
    parts: tuple = ()               # concat: per input (channels, bits, signed, z_in, requant)
    # conv geometry beyond `kernel`, `stride`, `pad` (which then hold kh, sh, pt): set only
    # when the kernel is not square, the strides differ, the pads are not all equal
    kernel_hw: tuple = ()           # (kh, kw)
    strides: tuple = ()             # (sh, sw)
    pads: tuple = ()                # (top, left, bottom, right)
    group: int = 1                  # conv: groups (depthwise: implied, Cout / Cin multiplier)

    def __post_init__(self):
        set_ = functools.partial(object.__setattr__, self)
        set_("in_shape", tuple(int(v) for v in self.in_shape))
        set_("out_shape", tuple(int(v) for v in self.out_shape))
        lo, hi = value_range(self.out_bits, self.out_signed) if self.out_bits in BITS else (0, 0)
        if self.q_min is None:
            set_("q_min", lo)
        if self.q_max is None:
            set_("q_max", hi)
        if self.b_bits is None:
            set_("b_bits", self.in_bits)
        if self.b_signed is None:
            set_("b_signed", self.in_signed)
        if self.dsp is None:
            set_("dsp", os.environ.get(PLAIN_ENV, "") not in ("1", "true", "yes"))
        sched = dict(self.schedule)
        set_("schedule", tuple(sorted((str(k), int(v)) for k, v in sched.items())))
        set_("window", tuple(int(v) for v in self.window))
        set_("b_shape", tuple(int(v) for v in self.b_shape))
        set_("parts", tuple(tuple(int(v) for v in p) for p in self.parts))
        for f, n, one in (("kernel_hw", 2, "kernel"), ("strides", 2, "stride"),
                          ("pads", 4, "pad")):
            v = tuple(int(e) for e in getattr(self, f))
            if v and len(v) != n:
                raise ModelError(f"kernel spec ({self.kind}): {f}={v}, expected {n} values")
            if v:               # canonical: the late field only when the int cannot say it
                set_(one, v[0])
            set_(f, () if len(set(v)) <= 1 else v)
        set_("group", int(self.group))
        _validate(self)

    @property
    def geometry(self) -> tuple[int, ...]:
        """(kh, kw, sh, sw, pt, pl, pb, pr) of a windowed kernel."""
        return (*(self.kernel_hw or (self.kernel,) * 2), *(self.strides or (self.stride,) * 2),
                *(self.pads or (self.pad,) * 4))

    @property
    def name(self) -> str:
        op = ops.for_kernel(self.kind)
        parts = ["mpq", op.c_kind[self.kind], _tag(self.in_bits, self.in_signed),
                 _tag(self.out_bits, self.out_signed)]
        if op.has_weights:
            parts.append(("ws" if self.w_signed else "w") + str(self.w_bits))
        suffix = re.sub(r"[^0-9A-Za-z_]", "_", self.suffix) or self.digest()
        return "_".join(parts + [suffix])

    def with_schedule(self, schedule: dict | None) -> KernelSpec:
        """The same spec with these schedule knobs (None or {}: the defaults)."""
        return dataclasses.replace(self, schedule=tuple((schedule or {}).items()))

    def digest(self) -> str:
        """8 hex digits that identify the spec (the default name suffix)."""
        text = repr(sorted(_fields(self).items()))
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    @classmethod
    def from_relax_call(cls, call) -> KernelSpec:
        """The spec of a call of mpq.conv2d_icn / linear_icn / avg_pool_icn / add_icn."""
        return _spec_from_call(call)


@dataclass(frozen=True)
class Kernel:
    name: str
    c_source: str
    scratch_bytes: int
    prototype: str          # "int32_t name(...);"


def generate_kernel(spec: KernelSpec) -> Kernel:
    """The C kernel of `spec` (cached: the same spec is generated once per process)."""
    return _generate(spec)


@functools.cache
def _generate(spec: KernelSpec) -> Kernel:
    name = spec.name
    op = ops.for_kernel(spec.kind)
    func, scratch, prelude = op.build_kernel(spec, name)
    args = op.c_args(spec) + (("uint8_t *scratch",) if scratch else ())
    signature = f"int32_t {name}({', '.join(args)})"
    if prelude is None:
        source = lower_to_c(func, name, signature, _banner(spec, name))
    else:
        source = lower_to_c(func, name, signature, _banner(spec, name), prelude=prelude)
    return Kernel(name, source, scratch, signature + ";")


def is_fast(spec: KernelSpec) -> bool:
    """Whether `spec` gets a DSP kernel (the weight operators' kernels with dsp=True whose
    geometry a DSP kernel takes: `dsp_layout` not None)."""
    op = ops.for_kernel(spec.kind)
    return bool(spec.dsp) and op.has_weights and op.dsp_layout(spec) is not None


@functools.cache
def dsp_prelude(depthwise: bool, generated: str = "") -> str:
    """The micro-kernels a fast kernel's C starts with: the shared base (intrinsics,
    unpacking, requantization), the layer's generated assembly (asm_m7), then
    the GEMM or the depthwise ones."""
    part = "mpq_dsp_dw.h" if depthwise else "mpq_dsp_gemm.h"
    return "\n".join(t for t in ((DSP_INCLUDE / "mpq_dsp.h").read_text(), generated,
                                  (DSP_INCLUDE / part).read_text()) if t)


def _spec_from_call(call) -> KernelSpec:
    from .. import tvm_adapter as ta

    def get(key, default=0):
        v = ta.attr(call, key, default)
        return str(v) if key == "name" else int(v)

    x = call.args[0]
    common = {"in_shape": ta.static_shape(x), "out_shape": ta.static_shape(call),
              "in_bits": get("in_bits", 8), "out_bits": get("out_bits", 8),
              "in_signed": str(x.ty.dtype) == "int8", "out_signed": get("q_min") < 0,
              "z_out": get("z_out"), "q_min": get("q_min"), "q_max": get("q_max"),
              "suffix": get("name", "")}
    try:
        op = ops.for_mpq_op(call.op.name)
    except ops.MissingFace:
        raise ModelError(f"no kernel for the operator {call.op.name}") from None
    return op.spec_from_call(call, common, get)


def pack_params(spec: KernelSpec, w=None, w_zero=None, bias=None, m0=None,
                n0=None) -> dict[str, tuple[str, bytes]]:
    """The constant arguments of a kernel, laid out as it reads them (little endian).

    w: conv / pointwise OHWI (Cout, KH, KW, Cin); depthwise (C, KH, KW, 1) as in the
    Relax op (or already (KH, KW, C)); linear (N, K). Values in the w_bits range (signed
    if w_signed). Returns {"w", "w_zero", "bias", "m0", "n0"} (avg_pool: m0, n0; add: {});
    each operator's `pack_params` face does the work.
    """
    consts = [v for v in (w, w_zero, bias, m0, n0) if v is not None]
    return ops.for_kernel(spec.kind).pack_params(spec, consts)


def int_le_bytes(values, dtype: str, n: int, what: str) -> bytes:
    """`n` integers (or one, repeated) as little-endian `dtype`, range-checked."""
    v = np.broadcast_to(np.asarray(values, np.int64).ravel(), (n,)) if np.size(values) == 1 \
        else np.asarray(values, np.int64).ravel()
    if v.shape != (n,):
        raise ModelError(f"{what}: {v.size} values, expected {n}")
    info = np.iinfo(np.dtype(dtype))
    if v.size and (v.min() < info.min or v.max() > info.max):
        raise ModelError(f"{what}: values outside the {np.dtype(dtype).name} range")
    return v.astype(dtype).tobytes()


def value_range(bits: int, signed: bool) -> tuple[int, int]:
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def _tag(bits: int, signed: bool) -> str:
    return ("s" if signed else "u") + str(bits)


_LATE_FIELDS = {"window": (), "requant": False, "b_shape": (), "parts": (),
                "kernel_hw": (), "strides": (), "pads": (), "group": 1}


def _fields(spec: KernelSpec) -> dict:
    """The spec's fields, without the late fields that hold their default."""
    return {k: v for k, v in asdict(spec).items()
            if k not in _LATE_FIELDS or v != _LATE_FIELDS[k]}


def _banner(spec: KernelSpec, name: str) -> str:
    fields = ", ".join(f"{k}={v}" for k, v in _fields(spec).items() if k != "suffix")
    return (f"/* {name}: generated by tvm_mpq.codegen.kernels (TVM TIR -> C); do not edit.\n"
            f" * {fields}\n"
            " * Layouts and ABI: see the tvm_mpq.codegen.kernels docstring. */")


def _validate(s: KernelSpec) -> None:
    def bad(msg):
        raise ModelError(f"kernel spec ({s.kind} {s.suffix or ''}): {msg}")

    try:
        op = ops.for_kernel(s.kind)
    except ops.MissingFace:
        kinds = tuple(k for o in ops.all_ops() for k in o.kernel_kinds)
        bad(f"unknown kind {s.kind!r}; expected one of {kinds}")
    if not 0 <= s.acc_shift <= 16:
        bad(f"acc_shift {s.acc_shift} outside 0..16")
    for what, b in (("in_bits", s.in_bits), ("out_bits", s.out_bits), ("w_bits", s.w_bits),
                    ("b_bits", s.b_bits)):
        if b not in BITS:
            bad(f"{what}={b} not in {BITS}")
    lo, hi = value_range(s.out_bits, s.out_signed)
    if not lo <= s.q_min <= s.q_max <= hi:
        bad(f"[q_min, q_max] = [{s.q_min}, {s.q_max}] outside the output range [{lo}, {hi}]")
    op.validate_spec(s, bad)
    if min(s.in_shape + s.out_shape) < 1:
        bad(f"empty shape {s.in_shape} -> {s.out_shape}")
    if s.schedule and not kernel_dsp.valid_schedule(s, dict(s.schedule)):
        bad(f"schedule {dict(s.schedule)} not in {kernel_dsp.schedule_space(s)} "
            f"({kernel_dsp.CONSTRAINTS})")


def validate_window(s: KernelSpec, bad, cout: int) -> None:
    """The checks of a windowed NHWC kernel (conv, pooling) with `cout` output channels."""
    if len(s.in_shape) != 4 or len(s.out_shape) != 4 or s.in_shape[0] != 1:
        bad(f"NHWC batch-1 shapes expected, got {s.in_shape} -> {s.out_shape}")
    kh, kw, sh, sw, pt, pl, pb, pr = s.geometry
    if min(kh, kw, sh, sw) < 1 or min(pt, pl, pb, pr) < 0:
        bad(f"kernel={s.kernel} stride={s.stride} pad={s.pad}" if not (
            s.kernel_hw or s.strides or s.pads) else f"geometry {s.geometry} (kh, kw, sh, sw, "
            "pt, pl, pb, pr)")
    _, h, w, c = s.in_shape
    ho, wo = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    if s.out_shape != (1, ho, wo, cout) or ho < 1 or wo < 1:
        bad(f"output shape {s.out_shape}, expected {(1, ho, wo, cout)}")
