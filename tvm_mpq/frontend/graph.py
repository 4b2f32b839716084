"""The project's own layer view of an ONNX model.

A `LayerGraph` is the list of compute layers in execution order, each made by the
operator that recognises its ONNX node (`Operator.from_onnx`, tvm_mpq/ops/), with its
activation tensors (NCHW shapes, batch 1), weight shapes, parameter counts and MACs. Glue
nodes (batch-norm, ReLU/ReLU6, reshape, flatten, Quantize/DequantizeLinear) are folded into
the layer they follow or feed.

This is what the memory planner, the reports and the code generator reason about;
anything the flow cannot compile is rejected here, with the node's name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from .. import ops
from ..errors import ModelError, UnsupportedOpError
from ..reference.packing import int_range

# Nodes that ride along with a compute layer (no arithmetic of their own on the target).
GLUE_OPS = {"BatchNormalization", "Relu", "Clip", "Flatten", "Reshape", "Squeeze",
            "Identity", "QuantizeLinear", "DequantizeLinear"}


@dataclass
class Layer:
    name: str                      # the ONNX node name of the compute node
    kind: str                      # a layer kind of a registered operator (ops.for_kind)
    inputs: list[str]              # activation tensor ids consumed
    output: str                    # activation tensor id produced
    in_shape: tuple[int, ...]      # NCHW (or NC for linear), batch 1
    out_shape: tuple[int, ...]
    weight_shape: tuple[int, ...] = ()
    n_weights: int = 0
    n_bias: int = 0
    macs: int = 0
    kernel: int = 0
    stride: int = 1
    pad: int = 0
    nodes: list[str] = field(default_factory=list)  # all ONNX nodes folded into this layer
    attrs: dict = field(default_factory=dict)       # operator-specific attributes

    @property
    def n_params(self) -> int:
        return self.n_weights + self.n_bias

    @property
    def n_in(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def n_out(self) -> int:
        return int(np.prod(self.out_shape))

    @property
    def has_weights(self) -> bool:
        return ops.for_kind(self.kind).has_weights

    @property
    def out_channels(self) -> int:
        return self.out_shape[1]

    def to_json(self) -> dict:
        d = asdict(self)
        d.update(n_params=self.n_params, in_shape=list(self.in_shape),
                 out_shape=list(self.out_shape), weight_shape=list(self.weight_shape),
                 in_bytes_8bit=self.n_in * len(self.inputs), out_bytes_8bit=self.n_out)
        return d


@dataclass
class LayerGraph:
    name: str
    input_name: str
    input_shape: tuple[int, ...]
    output_name: str
    layers: list[Layer]

    @property
    def weight_layers(self) -> list[Layer]:
        return [layer for layer in self.layers if layer.has_weights]

    @property
    def total_params(self) -> int:
        return sum(layer.n_params for layer in self.layers)

    @property
    def total_macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def is_chain(self) -> bool:
        """Whether every layer reads exactly the previous layer's output (the input first)."""
        prev = self.input_name
        for layer in self.layers:
            if layer.inputs != [prev]:
                return False
            prev = layer.output
        return True

    def consumers(self, tensor: str) -> list[Layer]:
        return [layer for layer in self.layers if tensor in layer.inputs]

    def to_json(self) -> dict:
        return {"model": self.name, "input": list(self.input_shape),
                "layers": [layer.to_json() for layer in self.layers],
                "total_params": self.total_params, "total_macs": self.total_macs}


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class _Analyzer:
    def __init__(self, model: onnx.ModelProto):
        self.g = model.graph
        self.inits = {t.name: t for t in self.g.initializer}
        self.shapes: dict[str, tuple[int, ...]] = {}
        for vi in list(self.g.value_info) + list(self.g.input) + list(self.g.output):
            tt = vi.type.tensor_type
            if tt.HasField("shape"):
                dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim)
                self.shapes[vi.name] = dims
        for t in self.g.initializer:
            self.shapes[t.name] = tuple(t.dims)
        self.producers = {o: n for n in self.g.node for o in n.output}
        self.consts: set[str] = set(self.inits)
        for n in self.g.node:   # constant folding of the weight path (Constant, QDQ of consts)
            if n.op_type == "Constant" or (n.op_type in GLUE_OPS | {"Transpose", "Cast"}
                                           and n.input and n.input[0] in self.consts):
                self.consts.update(n.output)
        self.alias: dict[str, str] = {}     # tensor -> activation tensor id (layer output)
        self.checked: set[str] = set()      # initializers already checked (check_constants)
        self.layers: list = []              # the layers built so far (build_layer_graph)
        self.node_ops = {n.name: n.op_type for n in self.g.node}

    def owner(self, tensor: str):
        """The layer that produced activation `tensor` (None for the model input), and the
        op types of the ONNX nodes folded into it so far."""
        layer = next((la for la in reversed(self.layers) if la.output == tensor), None)
        if layer is None:
            return None, []
        return layer, [self.node_ops.get(n, "") for n in layer.nodes]

    def shape(self, tensor: str, node: onnx.NodeProto) -> tuple[int, ...]:
        s = self.shapes.get(tensor)
        if s is None or any(d <= 0 for d in s):
            raise ModelError(f"node '{node.name}' ({node.op_type}): tensor '{tensor}' has an "
                             f"unknown, dynamic or zero-sized shape {s}")
        return s

    def act(self, tensor: str, node: onnx.NodeProto) -> str:
        if tensor not in self.alias:
            raise UnsupportedOpError(node.name, node.op_type,
                                     f"input '{tensor}' is neither the model input nor a layer "
                                     "output (constant or unsupported producer)")
        return self.alias[tensor]

    @staticmethod
    def attrs(node: onnx.NodeProto) -> dict:
        return _attrs(node)

    def io(self, node: onnx.NodeProto) -> tuple[str, tuple, tuple]:
        """(activation id of the first input, its shape, the output's shape)."""
        out_shape = self.shape(node.output[0], node)
        x = self.act(node.input[0], node)
        return x, self.shape(node.input[0], node), out_shape

    def image_io(self, node: onnx.NodeProto) -> tuple[str, tuple, tuple]:
        """`io` for operators on NCHW images (refuses any other rank)."""
        x, in_shape, out_shape = self.io(node)
        if len(in_shape) != 4:
            raise UnsupportedOpError(node.name, node.op_type, f"input of shape "
                                     f"{list(in_shape)} (only NCHW images)")
        return x, in_shape, out_shape

    def weights(self, node: onnx.NodeProto) -> tuple[np.ndarray, int]:
        """(weights, bias count) of a weight operator: inputs 1 and 2 must be constants
        (behind QDQ, Identity or Cast nodes too), the bias 1-D, the weights finite."""
        op = node.op_type
        w = self.const_array(node.input[1]) if len(node.input) > 1 else None
        if w is None:
            raise UnsupportedOpError(node.name, op, "weights must be constant initializers")
        bias = self.const_array(node.input[2]) if len(node.input) > 2 and node.input[2] \
            else None
        if bias is not None and bias.ndim != 1:
            raise UnsupportedOpError(node.name, op, f"bias of shape {bias.shape}")
        if not np.all(np.isfinite(w.astype(np.float64))):
            raise ModelError(f"node '{node.name}' ({op}): weights contain NaN or Inf")
        return w, 0 if bias is None else int(bias.size)

    def const_array(self, tensor: str) -> np.ndarray | None:
        # Follow DequantizeLinear/Identity/Cast back to an initializer (the stored weights).
        seen = 0
        while tensor not in self.inits and tensor in self.producers and seen < 8:
            tensor = self.producers[tensor].input[0]
            seen += 1
        t = self.inits.get(tensor)
        return None if t is None else numpy_helper.to_array(t)


def build_layer_graph(model: onnx.ModelProto) -> LayerGraph:
    """Analyze a validated (shape-inferred) ONNX model; see `frontend.loader.validate`."""
    a = _Analyzer(model)
    g = model.graph
    inp = [i for i in g.input if i.name not in a.inits][0]
    a.alias[inp.name] = inp.name
    input_shape = a.shapes[inp.name]
    if len(input_shape) not in (2, 4):
        raise ModelError(f"input '{inp.name}' has shape {list(input_shape)}; expected an NCHW "
                         "image (1, C, H, W) or a feature vector (1, K)")
    layers: list[Layer] = a.layers
    used_names: set[str] = set()
    for idx, node in enumerate(g.node):
        if not node.name or node.name in used_names:
            node.name = f"{node.op_type}_{idx}" if not node.name else f"{node.name}_{idx}"
        used_names.add(node.name)
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedOpError(node.name, f"{node.domain}.{op}", "custom domain")
        check_constants(a, node)
        if op == "Constant" or all(i in a.consts or i == "" for i in node.input):
            if op not in GLUE_OPS | {"Constant", "Transpose", "Cast"}:
                raise UnsupportedOpError(node.name, op, "constant subgraphs are not supported")
            continue
        if op in GLUE_OPS:
            _glue(a, node, layers)
        elif ops.for_onnx(op) is not None:
            layer = ops.for_onnx(op).from_onnx(a, node)
            if layer is None:       # the operator folds the node into its input's layer
                _glue(a, node, layers)
                continue
            layers.append(layer)
            a.alias[node.output[0]] = layer.output
        else:
            raise UnsupportedOpError(node.name, op)
    out = g.output[0].name
    if out not in a.alias or not layers:
        raise ModelError("the model output is not produced by any compute layer")
    final = a.alias[out]
    if final != layers[-1].output:
        raise ModelError(f"the model output '{out}' is not the last layer's output")
    return LayerGraph(g.name or "model", inp.name, input_shape, out, layers)


# Integer types whose values ONNX stores one per int32_data element (range checked there),
# and the packed sub-byte types (one byte per int32_data element).
_INT32_DATA_TYPES = {onnx.TensorProto.INT8: (8, True), onnx.TensorProto.UINT8: (8, False),
                     onnx.TensorProto.INT16: (16, True), onnx.TensorProto.UINT16: (16, False)}
_PACKED_TYPES = {onnx.TensorProto.INT4: 4, onnx.TensorProto.UINT4: 4,
                 onnx.TensorProto.INT2: 2, onnx.TensorProto.UINT2: 2}
_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
                onnx.TensorProto.BFLOAT16}


_ATTR_FIELD = {onnx.AttributeProto.INT: "i", onnx.AttributeProto.FLOAT: "f",
               onnx.AttributeProto.STRING: "s", onnx.AttributeProto.TENSOR: "t",
               onnx.AttributeProto.GRAPH: "g"}


def _check_tensor(t: onnx.TensorProto, node: onnx.NodeProto, role: str) -> np.ndarray:
    """The values of constant `t` (an input of `node`), or a ModelError naming the node: a
    malformed tensor, NaN/Inf, or integers outside the type's range (ONNX would wrap them
    silently when they are stored in int32_data)."""
    where = f"node '{node.name}' ({node.op_type}): {role} '{t.name}'"
    tname = onnx.TensorProto.DataType.Name(t.data_type) if t.data_type in \
        onnx.TensorProto.DataType.values() else str(t.data_type)
    if t.data_type in _INT32_DATA_TYPES and len(t.int32_data):
        bits, signed = _INT32_DATA_TYPES[t.data_type]
        lo, hi = int_range(bits, signed)
        raw = np.asarray(t.int32_data, np.int64)
        if raw.min() < lo or raw.max() > hi:
            bad = int(raw[(raw < lo) | (raw > hi)][0])
            raise ModelError(f"{where} holds {bad}, outside the {tname} range [{lo}, {hi}]")
    if t.data_type in _PACKED_TYPES and len(t.int32_data):
        raw = np.asarray(t.int32_data, np.int64)
        if raw.min() < 0 or raw.max() > 255:
            raise ModelError(f"{where}: packed {tname} data holds {int(raw[(raw < 0) | (raw > 255)][0])}, "
                             "not a byte")
    try:
        arr = numpy_helper.to_array(t)
    except Exception as e:  # noqa: BLE001 - onnx raises ValueError, TypeError and others
        raise ModelError(f"{where} is malformed ({tname}, dims {list(t.dims)}): "
                         f"{' '.join(str(e).split())[:120]}") from None
    if t.data_type in _FLOAT_TYPES and not np.all(np.isfinite(arr.astype(np.float64))):
        raise ModelError(f"{where} contains NaN or Inf")
    return arr


def check_constants(a: _Analyzer, node: onnx.NodeProto) -> None:
    """Every constant a node reads is well formed and finite; quantization scales are
    positive and shaped for their axis; batch-norm variances (+ epsilon) are positive; clip
    bounds are scalars."""
    op = node.op_type
    for attr in node.attribute:
        field = _ATTR_FIELD.get(attr.type)
        if field is not None and not attr.HasField(field):
            raise ModelError(f"node '{node.name}' ({op}): attribute '{attr.name}' has no value")
    if op == "Constant":
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                _check_tensor(attr.t, node, "constant value")
        return
    if op in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 1:
        _check_qdq_shapes(a, node)
    if op == "Clip":
        for name in node.input[1:3]:
            shape = a.shapes.get(name) if name else None
            if shape is not None and int(np.prod(shape)) != 1:
                raise UnsupportedOpError(node.name, op, f"bound '{name}' of shape "
                                         f"{list(shape)} (only scalar bounds)")
    for k, name in enumerate(node.input):
        t = a.inits.get(name)
        if t is None:
            continue
        role = "constant"
        if op in ("QuantizeLinear", "DequantizeLinear") and k > 0:
            role = "scale" if k == 1 else "zero point"
        elif op == "BatchNormalization" and k > 0:
            role = ("scale", "bias", "mean", "variance")[k - 1] if k < 5 else role
        if name in a.checked and role not in ("scale", "variance"):
            continue
        a.checked.add(name)
        arr = _check_tensor(t, node, role)
        if role == "scale" and op != "BatchNormalization" and np.any(arr <= 0):
            raise ModelError(f"node '{node.name}' ({op}): scale must be positive and finite, got "
                             f"{arr.ravel()[:4].tolist()}")
        if role == "variance":
            eps = float(_attrs(node).get("epsilon", 1e-5))
            if np.any(arr.astype(np.float64) + eps <= 0):
                raise ModelError(f"node '{node.name}' (BatchNormalization): variance + epsilon "
                                 f"must be positive, got {float(arr.min()) + eps:g}")


def _check_qdq_shapes(a: _Analyzer, node: onnx.NodeProto) -> None:
    """Per tensor: one scale (and zero point); per axis: a 1-D scale as long as the input's
    `axis` dimension, the zero point of the same shape (ONNX's rules, which its checker
    leaves to the runtime)."""
    at = _attrs(node)
    if at.get("block_size", 0):
        raise UnsupportedOpError(node.name, node.op_type, "blocked quantization (block_size)")
    out_type = int(at.get("output_dtype", 0))
    zp = a.inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if node.op_type == "QuantizeLinear" and out_type and (
            out_type not in onnx.TensorProto.DataType.values()
            or (zp is not None and zp.data_type != out_type)):
        raise ModelError(f"node '{node.name}' (QuantizeLinear): output_dtype {out_type} does "
                         "not match its zero point's type")
    s_shape = a.shapes.get(node.input[1])
    if s_shape is None:
        return
    z_shape = a.shapes.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if z_shape is not None and int(np.prod(z_shape)) != int(np.prod(s_shape)):
        raise ModelError(f"node '{node.name}' ({node.op_type}): zero point of shape "
                         f"{list(z_shape)} differs from the scale's {list(s_shape)}")
    x_shape = a.shapes.get(node.input[0])
    axis = int(at.get("axis", 1))
    if "axis" in at and x_shape is not None and not -len(x_shape) <= axis < len(x_shape):
        raise ModelError(f"node '{node.name}' ({node.op_type}): axis {axis} out of range for "
                         f"the input of shape {list(x_shape)}")
    if int(np.prod(s_shape)) == 1 and len(s_shape) <= 1:
        return
    if x_shape is not None and -len(x_shape) <= axis < len(x_shape) and len(s_shape) == 1 \
            and x_shape[axis] == s_shape[0]:
        return
    raise ModelError(f"node '{node.name}' ({node.op_type}): scale of shape {list(s_shape)} "
                     f"does not fit axis {axis} of the input of shape "
                     f"{list(x_shape) if x_shape is not None else '?'}")


def _glue(a: _Analyzer, node: onnx.NodeProto, layers: list[Layer]) -> None:
    op = node.op_type
    src = a.act(next((t for t in node.input if t not in a.consts), node.input[0]), node)
    owner = next((layer for layer in reversed(layers) if layer.output == src), None)
    if op == "Clip":
        lo = a.const_array(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        if lo is not None and float(np.ravel(lo)[0]) < 0:
            raise UnsupportedOpError(node.name, op, f"clip minimum {np.ravel(lo)[0]} < 0 (only "
                                     "ReLU-like clips, min >= 0, are supported)")
    if op == "BatchNormalization" and (owner is None or not owner.has_weights):
        raise UnsupportedOpError(node.name, op, "batch-norm must follow a conv or linear layer")
    if op in ("Reshape", "Flatten", "Squeeze"):
        shp = a.shape(node.output[0], node)
        if int(np.prod(shp)) != int(np.prod(a.shape(node.input[0], node))):
            raise UnsupportedOpError(node.name, op, "changes the number of elements")
    if owner is not None:
        owner.nodes.append(node.name)
        if op in ("BatchNormalization", "Add") and owner.n_bias == 0:
            owner.n_bias = owner.out_channels   # BN becomes a per-channel bias on the device
    for o in node.output[:1]:
        a.alias[o] = src
