"""Elementwise activations as integer lookup tables: HardSwish, HardSigmoid, Sigmoid, Tanh,
LeakyRelu, on 8/4/2-bit activations (signed or unsigned), any shape.

    ONNX     HardSwish | HardSigmoid (alpha, beta) | Sigmoid | Tanh | LeakyRelu (alpha),
             in the QDQ graph DQ -> op -> Q -> DQ
    plan     kind activation: no weights; its output carries its input's precision
    Relax    mpq.activation_lut(x, lut): TVM's ONNX frontend imports Sigmoid as
             relax.sigmoid, Tanh as relax.tanh, LeakyRelu as relax.nn.leakyrelu,
             HardSigmoid as clip(add(multiply(alpha, x), beta), 0, 1) and HardSwish as
             multiply(x, divide(clip(add(x, 3), 0, 6), 6)); the legalization evaluates
             that float subgraph of the one dequantized input (`float_function`), so every
             form TVM writes gives the same table
    table    for every input integer q in [lo, lo + 2^in_bits) (lo = -2^(in_bits-1) signed,
             else 0): real = (q - z_in) * s_in (float32, as DequantizeLinear),
             lut[q - lo] = clamp(rint(f(real) / s_out) + z_out, q_min, q_max) (round half
             to even); 2^in_bits entries (at most 256), one byte per entry: int8 when the
             output is signed, else uint8 (the output value itself, not packed)
    golden   y = lut[x - lo]
    kernels  plain TIR: unpack, index the table, pack; ABI
             int32_t mpq_activation_<in>_<out>_<suffix>(const uint8_t *x,
                 const int8_t|uint8_t *lut, uint8_t *y)
    torch    f(x) then the output quantizer: PACT (unsigned) for sigmoid / hard_sigmoid,
             SignedQuant for tanh / hard_swish / leaky_relu (quant/faces/activation.py)
"""

from __future__ import annotations

import numpy as np

from .. import tvm_adapter as ta
from ..errors import ModelError, UnsupportedOpError
from ..reference.packing import int_range
from . import register
from .base import Operator
from .common import relax_out_dtype

# ONNX op -> (function, default alpha, default beta)
ONNX_FUNCTIONS = {"HardSwish": ("hard_swish", 1 / 6, 0.5), "HardSigmoid": ("hard_sigmoid", 0.2, 0.5),
                  "Sigmoid": ("sigmoid", 0.0, 0.0), "Tanh": ("tanh", 0.0, 0.0),
                  "LeakyRelu": ("leaky_relu", 0.01, 0.0)}
# functions whose range is non-negative: unsigned (PACT-like) output quantizer
NON_NEGATIVE = ("sigmoid", "hard_sigmoid")


def reference_function(name: str, x: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """The float definition of each function (ONNX's), in float64."""
    x = np.asarray(x, np.float64)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if name == "tanh":
        return np.tanh(x)
    if name == "hard_sigmoid":
        return np.clip(alpha * x + beta, 0.0, 1.0)
    if name == "hard_swish":
        return x * np.clip(alpha * x + beta, 0.0, 1.0)
    if name == "leaky_relu":
        return np.where(x >= 0, x, alpha * x)
    raise ValueError(f"unknown activation function {name!r}")


def make_table(fn, in_bits: int, in_signed: bool, s_in: float, z_in: int, s_out: float,
               z_out: int, q_min: int, q_max: int) -> np.ndarray:
    """The lookup table (module docstring) of the float function `fn` (numpy -> numpy)."""
    lo, hi = int_range(in_bits, in_signed)
    q = np.arange(lo, hi + 1)
    real = ((q - z_in).astype(np.float32) * np.float32(s_in)).astype(np.float64)
    y = np.asarray(fn(real), np.float64)
    if not np.all(np.isfinite(y)):
        raise ModelError("activation table: the function is not finite on the input range")
    return np.clip(np.rint(y / s_out) + z_out, q_min, q_max).astype(np.int32)


def activation_lut(x, lut, in_lo: int) -> np.ndarray:
    """The golden model: y = lut[x - in_lo]."""
    return np.asarray(lut, np.int64)[np.asarray(x, np.int64) - in_lo].astype(np.int32)


# ---- the float subgraph of one dequantized input (what TVM's frontend wrote) -----------

_UNARY = {"relax.sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v)), "relax.tanh": np.tanh,
          "relax.nn.relu": lambda v: np.maximum(v, 0.0), "relax.negative": np.negative}
_BINARY = {"relax.add": np.add, "relax.subtract": np.subtract, "relax.multiply": np.multiply,
           "relax.divide": np.divide, "relax.maximum": np.maximum, "relax.minimum": np.minimum}


def float_function(leg, e):
    """(the activation operand, f) when `e` is an elementwise float function of exactly
    one dequantized activation (scalar constants aside), else None. f maps the real
    input values to the real outputs, in float64."""
    found = []

    def build(e):
        e = leg.value(e)
        if ta.is_call(e, "relax.dequantize"):
            a = leg.acts.get(e.args[0])
            if a is None or (found and found[0] is not a):
                return None
            found[:1] = [a]
            return lambda v: v
        c = leg.const(e)
        if c is not None:
            return (lambda v, c=float(c.item()): np.full_like(v, c)) if c.size == 1 else None
        if not ta.is_call(e):
            return None
        name = e.op.name
        if name in _UNARY:
            f = build(e.args[0])
            return None if f is None else (lambda v, f=f, g=_UNARY[name]: g(f(v)))
        if name == "relax.nn.leakyrelu":
            f, al = build(e.args[0]), float(e.attrs.alpha)
            return None if f is None else (lambda v: np.where(f(v) >= 0, f(v), al * f(v)))
        if name == "relax.clip":
            f = build(e.args[0])
            lo, hi = float(e.args[1].value), float(e.args[2].value)
            return None if f is None else (lambda v: np.clip(f(v), lo, hi))
        if name in _BINARY:
            f, g = build(e.args[0]), build(e.args[1])
            return None if f is None or g is None else \
                (lambda v, op=_BINARY[name]: op(f(v), g(v)))
        return None

    f = build(e)
    return None if f is None or not found else (found[0], f)


def legalize_function(leg, e, out, q_min: int, q_max: int, function: str):
    """Emit mpq.activation_lut for the float subgraph `e` (None if it is not one)."""
    got = float_function(leg, e)
    if got is None:
        return None
    x, fn = got
    if x.flat_from:
        raise ModelError(f"node '{out.node}': an activation of a flattened feature map")
    lo, _ = int_range(x.bits, x.signed)
    with np.errstate(all="ignore"):
        lut = make_table(fn, x.bits, x.signed, x.scale, x.zero, out.scale, out.zero, q_min,
                         q_max)
    name = leg.layer_name("activation")
    attrs = dict(function=function, in_lo=lo, z_in=x.zero, z_out=out.zero, q_min=q_min,
                 q_max=q_max, in_bits=x.bits, out_bits=out.bits, name=name, kind="activation",
                 in_node=x.node, out_node=out.node)
    return leg.emit("mpq.activation_lut", [x.var, ta.const(lut)], attrs)


# ---- Relax op --------------------------------------------------------------------------

def _legalize_relax(bb, call):
    te = ta.te()
    lo = int(call.attrs["in_lo"])
    dt = relax_out_dtype(call.attrs)

    def f(x, lut):
        return te.compute(x.shape, lambda *i: lut[x(*i).astype("int32") - lo].astype(dt),
                          name="activation_lut")

    return bb.call_te(f, *call.args, primfunc_name_hint="mpq_activation")


def _infer_relax(call, *_):
    return ta.tensor_type(ta.static_shape(call.args[0]), relax_out_dtype(call.attrs))


# ---- the plain kernel ------------------------------------------------------------------

def plain_kernel(spec):
    """y[i] = lut[x[i] - lo], element by element over packed rows."""
    from ..codegen import kernel_te as kt
    from ..reference.packing import row_bytes

    te = ta.te()
    pre, n = tuple(spec.in_shape[1:-1]), spec.in_shape[-1]
    lo, _ = int_range(spec.in_bits, spec.in_signed)
    x = te.placeholder((*pre, row_bytes(n, spec.in_bits)), "uint8", "x")
    lut = te.placeholder((1 << spec.in_bits,), "int8" if spec.out_signed else "uint8", "lut")

    def value(*idx):
        *p, ch = idx
        return lut[kt.load(x, tuple(p), ch, spec.in_bits, spec.in_signed) - lo].astype("int32")

    y = kt.pack_rows(pre, n, spec.out_bits, value)
    return kt.scheduled([x, lut, y], reduces=False)


@register
class Activation(Operator):
    name = "activation"
    kinds = ("activation",)
    onnx_types = tuple(ONNX_FUNCTIONS)
    mpq_ops = {"mpq.activation_lut": (2, _infer_relax, _legalize_relax)}
    # relax.multiply (HardSwish) is the mul operator's, which hands x * f(x) back here
    relax_patterns = ("relax.sigmoid", "relax.tanh", "relax.nn.leakyrelu", "relax.clip")
    kernel_kinds = ("activation",)
    c_kind = {"activation": "activation"}
    colors = {"activation": "#8172b3"}
    torch_face = "tvm_mpq.quant.faces.activation:ActivationFace"

    def from_onnx(self, a, node):
        from ..frontend.graph import Layer

        op, at = node.op_type, a.attrs(node)
        x, in_shape, out_shape = a.io(node)
        if len(in_shape) not in (2, 4) or tuple(out_shape) != tuple(in_shape):
            raise UnsupportedOpError(node.name, op, f"input of shape {list(in_shape)} -> "
                                     f"{list(out_shape)} (only NCHW or (1, C), same shape)")
        fn, alpha, beta = ONNX_FUNCTIONS[op]
        alpha, beta = float(at.get("alpha", alpha)), float(at.get("beta", beta))
        if not (np.isfinite(alpha) and np.isfinite(beta)):
            raise ModelError(f"node '{node.name}' ({op}): alpha {alpha} / beta {beta} must be "
                             "finite")
        return Layer(node.name, "activation", [x], node.output[0], in_shape, out_shape,
                     macs=int(np.prod(out_shape)), nodes=[node.name],
                     attrs={"function": fn, "alpha": alpha, "beta": beta})

    def legalize(self, leg, e, fused, out, q_min, q_max):
        names = {"relax.sigmoid": "sigmoid", "relax.tanh": "tanh",
                 "relax.nn.leakyrelu": "leaky_relu", "relax.clip": "hard_sigmoid",
                 "relax.multiply": "hard_swish"}
        v = legalize_function(leg, e, out, q_min, q_max, names.get(e.op.name, e.op.name))
        if v is None:
            raise ModelError(f"node '{out.node}': {e.op.name} is not an elementwise function "
                             "of one quantized tensor (scalar constants aside)")
        return v

    def golden(self, op_name, args, a):
        return activation_lut(args[0], args[1], int(a["in_lo"]))

    def spec_from_call(self, call, common, get):
        from ..codegen.kernels import KernelSpec

        return KernelSpec("activation", z_in=get("z_in"), **common)

    def validate_spec(self, s, bad):
        if s.in_shape != s.out_shape or s.in_shape[0] != 1:
            bad(f"activation shapes must be equal with batch 1: {s.in_shape} -> {s.out_shape}")

    def c_args(self, spec):
        return ("const uint8_t *x", f"const {'int8_t' if spec.out_signed else 'uint8_t'} *lut",
                "uint8_t *y")

    def build_kernel(self, spec, name):
        return plain_kernel(spec), 0, None

    def pack_params(self, spec, consts):
        from ..codegen.kernels import int_le_bytes

        ctype = "int8_t" if spec.out_signed else "uint8_t"
        return {"lut": (ctype, int_le_bytes(consts[0], "i1" if spec.out_signed else "u1",
                                            1 << spec.in_bits, "activation table"))}
