"""QDQ ONNX models (QuantizeLinear / DequantizeLinear) before TVM's ONNX frontend.

TVM's frontend rejects sub-byte initializers (INT4/UINT4/INT2/UINT2) and imports Clip as a
tangle of `where`/`isnan`. `prepare_qdq` rewrites the model into an equivalent one that the
frontend takes, and records what the rewrite hides:

- sub-byte initializers become INT8/UINT8 tensors with the same values;
- a QuantizeLinear to a sub-byte type quantizes to the 8-bit container type; its real
  range (the clamp to 4 or 2 bits) is kept in `QdqInfo` and applied by
  LegalizeRequantizeToICN;
- Clip(x, 0, hi) with constant bounds becomes Relu; `hi` is kept in `QdqInfo` for the
  QuantizeLinear that consumes it (TVM imports Clip as where/isnan/maximum chains).

So the prepared model is not a faithful float model on its own: it is faithful together
with `QdqInfo`, which the AnnotatePrecision pass attaches to the Relax module (bit width,
signedness and clip bound of every QuantizeLinear output, bit width and signedness of every
DequantizeLinear of an initializer). Scales and zero points are validated here, where node
names still exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import ModelError
from ..reference.packing import int_range

# ONNX element type -> (bits, signed, 8-bit container type)
QTYPES = {
    TensorProto.UINT8: (8, False, TensorProto.UINT8),
    TensorProto.INT8: (8, True, TensorProto.INT8),
    TensorProto.UINT4: (4, False, TensorProto.UINT8),
    TensorProto.INT4: (4, True, TensorProto.INT8),
    TensorProto.UINT2: (2, False, TensorProto.UINT8),
    TensorProto.INT2: (2, True, TensorProto.INT8),
    TensorProto.INT32: (32, True, TensorProto.INT32),
}


@dataclass(frozen=True)
class QSpec:
    node: str            # the ONNX node name (QuantizeLinear or DequantizeLinear)
    tensor: str          # the quantized tensor's name
    bits: int
    signed: bool
    shape: tuple[int, ...]
    clip_hi: float | None = None   # an upper clip (real units) applied before quantizing

    @property
    def q_range(self) -> tuple[int, int]:
        return int_range(self.bits, self.signed)


@dataclass
class QdqInfo:
    quantize: list[QSpec] = field(default_factory=list)       # QuantizeLinear, node order
    const_dequantize: list[QSpec] = field(default_factory=list)  # DQ of initializers


def is_qdq(model: onnx.ModelProto) -> bool:
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


def _bits_of(t: onnx.TensorProto, node: onnx.NodeProto) -> tuple[int, bool, int]:
    if t.data_type not in QTYPES:
        raise ModelError(f"node '{node.name}' ({node.op_type}): quantized type "
                         f"{TensorProto.DataType.Name(t.data_type)} is not supported "
                         "(supported: INT8/UINT8/INT4/UINT4/INT2/UINT2, INT32 biases)")
    return QTYPES[t.data_type]


def _to_container(arr: np.ndarray, signed: bool) -> np.ndarray:
    return np.asarray(arr).astype(np.int8 if signed else np.uint8)


def prepare_qdq(model: onnx.ModelProto) -> tuple[onnx.ModelProto, QdqInfo]:
    """Rewrite a validated QDQ model for TVM's frontend; see the module docstring."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    shapes = {vi.name: tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
              for vi in list(g.value_info) + list(g.input) + list(g.output)}
    info = QdqInfo()
    new_nodes: list[onnx.NodeProto] = []
    replaced: dict[str, onnx.TensorProto] = {}
    clip_hi: dict[str, float] = {}      # Clip output -> its upper bound

    def const(name: str, node) -> np.ndarray:
        if name not in inits:
            raise ModelError(f"node '{node.name}' ({node.op_type}): '{name}' must be a constant "
                             "initializer")
        return numpy_helper.to_array(inits[name])

    def replace_init(name: str, arr: np.ndarray) -> None:
        t = numpy_helper.from_array(arr, name)
        replaced[name] = t

    for idx, node in enumerate(g.node):
        if not node.name:
            node.name = f"{node.op_type}_{idx}"
        op = node.op_type
        if op in ("QuantizeLinear", "DequantizeLinear"):
            scale = const(node.input[1], node).astype(np.float64)
            if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
                raise ModelError(f"node '{node.name}' ({op}): scale must be positive and finite, "
                                 f"got {scale.ravel()[:4].tolist()}")
            zp_t = inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            if op == "QuantizeLinear":
                attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
                if "output_dtype" in attrs and zp_t is None:
                    raise ModelError(f"node '{node.name}': QuantizeLinear needs a zero-point "
                                     "input to define its type")
                bits, signed, cont = (8, False, TensorProto.UINT8) if zp_t is None \
                    else _bits_of(zp_t, node)
                if bits == 32:
                    raise ModelError(f"node '{node.name}': QuantizeLinear to INT32")
                zp = np.zeros(1, np.int64) if zp_t is None else numpy_helper.to_array(zp_t).astype(np.int64)
                _check_zp(zp, bits, signed, node)
                spec = QSpec(node.name, node.output[0], bits, signed,
                             shapes.get(node.output[0], ()), clip_hi.get(node.input[0]))
                info.quantize.append(spec)
                if scale.size != 1 or zp.size != 1:
                    raise ModelError(f"node '{node.name}': per-channel quantization of "
                                     "activations is not supported (only weights)")
                if bits < 8:
                    replace_init(node.input[2], _to_container(zp, signed).reshape(zp_t.dims))
            else:
                src = node.input[0]
                if src in inits:
                    bits, signed, cont = _bits_of(inits[src], node)
                    arr = numpy_helper.to_array(inits[src])
                    if zp_t is not None:
                        zb, zs, _ = _bits_of(zp_t, node)
                        if zp_t.data_type != inits[src].data_type:
                            raise ModelError(
                                f"node '{node.name}' (DequantizeLinear): zero point type "
                                f"{TensorProto.DataType.Name(zp_t.data_type)} differs from the "
                                f"tensor's {TensorProto.DataType.Name(inits[src].data_type)}")
                        zp = numpy_helper.to_array(zp_t).astype(np.int64)
                        _check_zp(zp, zb, zs, node)
                        if bits < 8:
                            replace_init(node.input[2], _to_container(zp, signed).reshape(zp_t.dims))
                    if bits < 8:
                        replace_init(src, _to_container(arr, signed).reshape(inits[src].dims))
                    info.const_dequantize.append(
                        QSpec(node.name, src, bits, signed, tuple(inits[src].dims)))
                elif zp_t is not None and QTYPES.get(zp_t.data_type, (8,))[0] < 8:
                    _, signed, _ = _bits_of(zp_t, node)
                    replace_init(node.input[2], _to_container(
                        numpy_helper.to_array(zp_t), signed).reshape(zp_t.dims))
        elif op == "Clip":
            lo = const(node.input[1], node).item() if len(node.input) > 1 and node.input[1] else None
            hi = const(node.input[2], node).item() if len(node.input) > 2 and node.input[2] else None
            if lo is None or lo != 0.0:
                raise ModelError(f"node '{node.name}' (Clip): only clips with minimum 0 "
                                 f"(ReLU, ReLU6, PACT) are supported, got min={lo}")
            if hi is not None:
                clip_hi[node.output[0]] = float(hi)
            new_nodes.append(helper.make_node("Relu", [node.input[0]], [node.output[0]],
                                              name=node.name))
            continue
        new_nodes.append(node)
    for name, t in inits.items():      # sub-byte initializers no Q/DQ reads (TVM's frontend
        if name not in replaced and QTYPES.get(t.data_type, (8,))[0] < 8:   # fails on them)
            replace_init(name, _to_container(numpy_helper.to_array(t),
                                             QTYPES[t.data_type][1]).reshape(t.dims))
    for name, t in replaced.items():
        inits[name].CopyFrom(t)
    del g.node[:]
    g.node.extend(new_nodes)
    # Sub-byte types are gone; drop stale value_info so the frontend re-infers.
    del g.value_info[:]
    return m, info


def _check_zp(zp: np.ndarray, bits: int, signed: bool, node) -> None:
    lo, hi = int_range(bits, signed)
    if zp.size and (zp.min() < lo or zp.max() > hi):
        raise ModelError(f"node '{node.name}' ({node.op_type}): zero point out of range "
                         f"[{lo}, {hi}] for {bits}-bit {'signed' if signed else 'unsigned'}")
