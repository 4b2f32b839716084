"""The project's own layer view of an ONNX model.

A `LayerGraph` is the list of compute layers in execution order: conv, depthwise,
pointwise, linear, pool and add, with their activation tensors (NCHW shapes, batch 1),
weight shapes, parameter counts and MACs. Glue nodes (batch-norm, ReLU/ReLU6, reshape,
flatten, Quantize/DequantizeLinear) are folded into the layer they follow or feed.

This is what the memory planner, the reports and the code generator reason about;
anything the flow cannot compile is rejected here, with the node's name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import ModelError, UnsupportedOpError
from ..reference.packing import int_range

WEIGHT_KINDS = ("conv", "depthwise", "pointwise", "linear")
LAYER_KINDS = WEIGHT_KINDS + ("pool", "add")
# Nodes that ride along with a compute layer (no arithmetic of their own on the target).
GLUE_OPS = {"BatchNormalization", "Relu", "Clip", "Flatten", "Reshape", "Squeeze",
            "Identity", "QuantizeLinear", "DequantizeLinear"}
COMPUTE_OPS = {"Conv", "Gemm", "MatMul", "GlobalAveragePool", "AveragePool", "Add"}
SUPPORTED_STRIDES = (1, 2)


@dataclass
class Layer:
    name: str                      # the ONNX node name of the compute node
    kind: str                      # one of LAYER_KINDS
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
        return self.kind in WEIGHT_KINDS

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
    if len(input_shape) != 4:
        raise ModelError(f"input '{inp.name}' has shape {input_shape}; expected an NCHW image")
    layers: list[Layer] = []
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
        elif op in COMPUTE_OPS:
            layer = _compute(a, node)
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
    src = a.act(node.input[0], node)
    owner = next((layer for layer in reversed(layers) if layer.output == src), None)
    if op == "Clip":
        lo = a.const_array(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        if lo is not None and float(np.ravel(lo)[0]) < 0:
            raise UnsupportedOpError(node.name, op, f"clip minimum {np.ravel(lo)[0]} < 0 (only "
                                     "ReLU-like clips, min >= 0, are supported)")
    if op == "BatchNormalization" and (owner is None or owner.kind not in WEIGHT_KINDS):
        raise UnsupportedOpError(node.name, op, "batch-norm must follow a conv or linear layer")
    if op in ("Reshape", "Flatten", "Squeeze"):
        shp = a.shape(node.output[0], node)
        if int(np.prod(shp)) != int(np.prod(a.shape(node.input[0], node))):
            raise UnsupportedOpError(node.name, op, "changes the number of elements")
    if owner is not None:
        owner.nodes.append(node.name)
        if op == "BatchNormalization" and owner.n_bias == 0:
            owner.n_bias = owner.out_channels   # BN becomes a per-channel bias on the device
    for o in node.output[:1]:
        a.alias[o] = src


def _compute(a: _Analyzer, node: onnx.NodeProto) -> Layer:
    op, at = node.op_type, _attrs(node)
    out_shape = a.shape(node.output[0], node)
    if op == "Add":
        ins = [a.act(t, node) for t in node.input]
        s0, s1 = (a.shape(t, node) for t in node.input)
        if s0 != s1:
            raise UnsupportedOpError(node.name, op, f"broadcasting add {s0} + {s1}")
        return Layer(node.name, "add", ins, node.output[0], s0, out_shape,
                     macs=int(np.prod(out_shape)), nodes=[node.name])
    x = a.act(node.input[0], node)
    in_shape = a.shape(node.input[0], node)
    if op in ("GlobalAveragePool", "AveragePool", "Conv") and len(in_shape) != 4:
        raise UnsupportedOpError(node.name, op, f"input of shape {list(in_shape)} (only NCHW "
                                 "images)")
    if op in ("GlobalAveragePool", "AveragePool"):
        if op == "AveragePool":
            k = at.get("kernel_shape", [1, 1])
            if list(at.get("pads", [0, 0, 0, 0])) != [0] * 4 or at.get("count_include_pad", 0):
                raise UnsupportedOpError(node.name, op, "padded average pooling")
            if k[0] != k[1] or len(set(at.get("strides", [1, 1]))) != 1:
                raise UnsupportedOpError(node.name, op, f"non-square pooling {k}")
            kernel, stride = int(k[0]), int(at.get("strides", [1, 1])[0])
        else:
            kernel, stride = int(in_shape[2]), 1
        want = [1, in_shape[1]] + [(d - kernel) // stride + 1 if op == "AveragePool" else 1
                                   for d in in_shape[2:]]
        if kernel < 1 or stride < 1 or list(out_shape) != want:
            raise ModelError(f"node '{node.name}' ({op}): output shape {list(out_shape)}, "
                             f"expected {want} (kernel {kernel}, stride {stride})")
        macs = int(np.prod(out_shape)) * kernel * kernel
        return Layer(node.name, "pool", [x], node.output[0], in_shape, out_shape,
                     macs=macs, kernel=kernel, stride=stride, nodes=[node.name])
    w = a.const_array(node.input[1]) if len(node.input) > 1 else None
    if w is None:
        raise UnsupportedOpError(node.name, op, "weights must be constant initializers")
    bias = a.const_array(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if bias is not None and bias.ndim != 1:
        raise UnsupportedOpError(node.name, op, f"bias of shape {bias.shape}")
    if not np.all(np.isfinite(w.astype(np.float64))):     # also behind QDQ or Cast nodes
        raise ModelError(f"node '{node.name}' ({op}): weights contain NaN or Inf")
    n_bias = 0 if bias is None else int(bias.size)
    if op == "Conv":
        return _conv(node, at, x, in_shape, out_shape, w, n_bias)
    # Gemm / MatMul: a fully connected layer on a flat vector.
    if len(in_shape) != 2 or w.ndim != 2:
        raise UnsupportedOpError(node.name, op, f"only (1, K) x (K, N) products, got {in_shape}")
    if op == "Gemm":
        if at.get("transA", 0) or at.get("alpha", 1.0) != 1.0 or at.get("beta", 1.0) != 1.0:
            raise UnsupportedOpError(node.name, op, "transA/alpha/beta other than defaults")
        k_in, n_out = (w.shape[1], w.shape[0]) if at.get("transB", 0) else w.shape
    else:
        k_in, n_out = w.shape
    if k_in != in_shape[1] or (n_bias and n_bias != n_out):
        raise ModelError(f"node '{node.name}' ({op}): weights {list(w.shape)} (bias "
                         f"{n_bias}) do not fit the input {list(in_shape)}")
    return Layer(node.name, "linear", [x], node.output[0], in_shape, out_shape,
                 weight_shape=tuple(w.shape), n_weights=int(w.size), n_bias=n_bias,
                 macs=int(k_in * n_out), nodes=[node.name])


def _conv(node, at, x, in_shape, out_shape, w, n_bias) -> Layer:
    op = node.op_type
    if w.ndim != 4:
        raise UnsupportedOpError(node.name, op, f"only 2-D convolutions (weights {w.shape})")
    cout, cin_g, kh, kw = w.shape
    cin = in_shape[1]
    group = int(at.get("group", 1))
    if at.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise UnsupportedOpError(node.name, op, "auto_pad (use explicit pads)")
    if any(d != 1 for d in at.get("dilations", [1, 1])):
        raise UnsupportedOpError(node.name, op, f"dilations {list(at['dilations'])}")
    if kh != kw:
        raise UnsupportedOpError(node.name, op, f"non-square kernel {kh}x{kw}")
    strides = list(at.get("strides", [1, 1]))
    if strides[0] != strides[1] or strides[0] not in SUPPORTED_STRIDES:
        raise UnsupportedOpError(node.name, op, f"strides {strides} (supported: 1 or 2, square)")
    pads = list(at.get("pads", [0, 0, 0, 0]))
    if len(set(pads)) != 1:
        raise UnsupportedOpError(node.name, op, f"asymmetric pads {pads}")
    if group < 1 or cin_g * group != cin:
        raise ModelError(f"node '{node.name}' ({op}): weights {list(w.shape)} with group={group} "
                         f"take {cin_g * group} input channels, the input has {cin}")
    if n_bias and n_bias != cout:
        raise ModelError(f"node '{node.name}' ({op}): {n_bias} biases for {cout} output channels")
    if list(at.get("kernel_shape", [kh, kw])) != [kh, kw]:
        raise ModelError(f"node '{node.name}' ({op}): kernel_shape {list(at['kernel_shape'])} "
                         f"differs from the weights' {kh}x{kw}")
    want = [(d + 2 * pads[0] - kh) // strides[0] + 1 for d in in_shape[2:]]
    if list(out_shape) != [1, cout] + want:
        raise ModelError(f"node '{node.name}' ({op}): output shape {list(out_shape)}, expected "
                         f"{[1, cout] + want} from the input, weights, pads and strides")
    if group == 1:
        kind = "pointwise" if kh == 1 and pads[0] == 0 else "conv"
    elif group == cin and cin_g == 1 and cout == cin:
        kind = "depthwise"
    else:
        raise UnsupportedOpError(node.name, op, f"group={group} (only 1 or depthwise with "
                                 "channel multiplier 1)")
    macs = int(np.prod(out_shape)) * cin_g * kh * kw
    return Layer(node.name, kind, [x], node.output[0], in_shape, out_shape,
                 weight_shape=tuple(w.shape), n_weights=int(w.size), n_bias=n_bias, macs=macs,
                 kernel=int(kh), stride=int(strides[0]), pad=int(pads[0]), nodes=[node.name])
