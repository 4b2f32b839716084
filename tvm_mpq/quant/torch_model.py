"""A PyTorch twin of a float ONNX model of the supported family, and the way back.

The family is the chain the zoo produces (and most small CNN classifiers are):

    [Conv -> (BatchNormalization) -> (Relu | Clip(0, M))]* -> GlobalAveragePool
        -> (Reshape | Flatten) -> Gemm

`from_onnx` builds a `TorchNet` whose layers keep the ONNX node names (`conv0`,
`block1.dw`, ..., `pool`, `fc`) and copies every weight; `to_float_onnx` writes the
(trained) float model back with the zoo's node and initializer names. The round trip is
exact up to float rounding of the batch-norm arithmetic.

The layers carry hooks for fake quantization (`wq`, `aq`, `fold`, set by
`fake_quant.configure`); with none set the model is the float model.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from ..errors import ModelError, UnsupportedOpError

FLOAT_OPSET = 21
# Input convention (docs/quantization.md): x = (p - 128) / 128, uint8 scale 1/128, zp 128.
INPUT_SCALE = 1.0 / 128.0
INPUT_ZERO_POINT = 128
INPUT_BITS = 8


class ConvLayer(nn.Module):
    """Conv (+ BatchNorm) (+ ReLU or ReLU6-style clip), optionally fake-quantized."""

    def __init__(self, name: str, kind: str, weight: np.ndarray, bias: np.ndarray | None,
                 stride: int, pad: int, groups: int):
        super().__init__()
        self.name, self.kind = name, kind
        self.weight = nn.Parameter(torch.from_numpy(np.array(weight, np.float32)))
        self.bias = None if bias is None else nn.Parameter(torch.from_numpy(
            np.array(bias, np.float32)))
        self.stride, self.pad, self.groups = stride, pad, groups
        self.bn: nn.BatchNorm2d | None = None
        self.bn_name: str | None = None
        self.act: str | None = None          # None, "relu" or "clip"
        self.act_name: str | None = None
        self.clip_max: float | None = None
        # fake quantization (fake_quant.configure)
        self.wq: nn.Module | None = None
        self.aq: nn.Module | None = None
        self.fold = False
        self.bn_frozen = False

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    def set_bn(self, name: str, gamma, beta, mean, var, eps: float) -> None:
        c = self.out_channels
        bn = nn.BatchNorm2d(c, eps=eps, momentum=0.1)
        with torch.no_grad():
            for t, v in ((bn.weight, gamma), (bn.bias, beta), (bn.running_mean, mean),
                         (bn.running_var, var)):
                v = np.array(v, np.float32)
                if v.shape != (c,):
                    raise ModelError(f"batch-norm '{name}': parameter of shape {v.shape}, "
                                     f"expected ({c},)")
                t.copy_(torch.from_numpy(v))
        self.bn, self.bn_name = bn, name

    def conv(self, x, w, b=None):
        return F.conv2d(x, w, b, self.stride, self.pad, 1, self.groups)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch-norm folded into the weights: W' = W*gamma/sigma, b' = beta - mu*gamma/sigma
        (plus the conv's own bias, scaled), with the running statistics."""
        bn = self.bn
        k = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        w = self.weight * k.reshape(-1, 1, 1, 1)
        b0 = self.bias if self.bias is not None else torch.zeros_like(bn.running_mean)
        return w, bn.bias + (b0 - bn.running_mean) * k

    def preact(self, x):
        """The layer up to (not including) its activation: conv (+ batch-norm)."""
        if self.fold and self.bn is not None:
            if self.training and not self.bn_frozen:
                with torch.no_grad():  # update the running statistics from the float conv
                    F.batch_norm(self.conv(x, self.weight, self.bias), self.bn.running_mean,
                                 self.bn.running_var, None, None, True, self.bn.momentum,
                                 self.bn.eps)
            w, b = self.folded()
            y = self.conv(x, self.wq(w) if self.wq is not None else w, b)
        else:
            w = self.wq(self.weight) if self.wq is not None else self.weight
            y = self.conv(x, w, self.bias)
            if self.bn is not None:
                frozen = self.bn_frozen or not self.training
                y = F.batch_norm(y, self.bn.running_mean, self.bn.running_var, self.bn.weight,
                                 self.bn.bias, not frozen, self.bn.momentum, self.bn.eps)
        return y

    def forward(self, x):
        y = self.preact(x)
        if self.aq is not None:
            return self.aq(y)           # PACT: clamp to [0, a] and quantize
        if self.act == "relu":
            return F.relu(y)
        if self.act == "clip":
            return torch.clamp(y, 0.0, self.clip_max)
        return y


class PoolLayer(nn.Module):
    """Global average pooling; fake-quantized it re-quantizes with its input's scale."""

    def __init__(self, name: str):
        super().__init__()
        self.name, self.kind = name, "pool"
        self.requant: nn.Module | None = None   # the producer's activation quantizer

    def forward(self, x):
        y = x.mean(dim=(2, 3), keepdim=True)
        if self.requant is not None:
            return self.requant.requantize(y)
        return y


class LinearLayer(nn.Module):
    """The final fully connected layer (Gemm with transB=1: weight [out, in])."""

    def __init__(self, name: str, weight: np.ndarray, bias: np.ndarray | None):
        super().__init__()
        self.name, self.kind = name, "linear"
        self.weight = nn.Parameter(torch.from_numpy(np.array(weight, np.float32)))
        n_out = self.weight.shape[0]
        self.bias = nn.Parameter(torch.from_numpy(
            np.zeros(n_out, np.float32) if bias is None else np.array(bias, np.float32)))
        self.wq: nn.Module | None = None
        self.oq: nn.Module | None = None        # symmetric int8 logits

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    def preact(self, x):
        w = self.wq(self.weight) if self.wq is not None else self.weight
        return F.linear(x, w, self.bias)

    def forward(self, x):
        y = self.preact(x)
        return self.oq(y) if self.oq is not None else y


class TorchNet(nn.Module):
    """The chain model; `layers` in execution order, each with its ONNX `.name`."""

    def __init__(self, name: str, input_shape: tuple[int, int, int], layers: list[nn.Module],
                 flatten_name: str = "flatten"):
        super().__init__()
        self.name = name
        self.input_shape = tuple(int(d) for d in input_shape)   # C, H, W
        self.layers = nn.ModuleList(layers)
        self.flatten_name = flatten_name
        self.iq: nn.Module | None = None      # network input quantizer (8-bit, fixed)
        self.plan: dict | None = None         # the plan the quantizers were configured from

    @property
    def quantized(self) -> bool:
        return self.plan is not None

    @property
    def num_classes(self) -> int:
        return self.layers[-1].out_channels

    def layer(self, name: str) -> nn.Module:
        for m in self.layers:
            if m.name == name:
                return m
        raise KeyError(name)

    def weight_layers(self) -> list[nn.Module]:
        return [m for m in self.layers if m.kind != "pool"]

    def freeze_bn(self) -> None:
        for m in self.layers:
            if isinstance(m, ConvLayer):
                m.bn_frozen = True

    @torch.no_grad()
    def reset_parameters(self, seed: int = 0) -> None:
        """Re-initialize every weight as PyTorch initializes a fresh nn.Conv2d / nn.Linear /
        nn.BatchNorm2d, from a generator seeded with `seed`.

        Conv and linear weights: kaiming_uniform_(a=sqrt(5)), i.e. U(-1/sqrt(fan_in),
        1/sqrt(fan_in)), std 1/sqrt(3 fan_in); biases U(-1/sqrt(fan_in), 1/sqrt(fan_in));
        batch-norm gamma 1, beta 0, running mean 0, running variance 1 (eps unchanged).
        The draws are in layer order, so the weights equal those of an nn.Sequential of the
        same layers built after `torch.manual_seed(seed)`.

        Training from the zoo's synthetic weights needs this (quant.train `float_init`): their
        He-normal weights, std sqrt(2/fan_in), are 2.4x larger, so under batch-norm's scale
        invariance Adam's fixed-size steps turn them 2.4x slower (Fashion-MNIST, 3 float
        epochs: 78.6% instead of the plain PyTorch loop's 83.7%)."""
        g = torch.Generator().manual_seed(int(seed))
        for m in self.layers:
            if isinstance(m, (ConvLayer, LinearLayer)):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=g)
                if m.bias is not None:
                    bound = 1.0 / math.sqrt(m.weight[0].numel())
                    nn.init.uniform_(m.bias, -bound, bound, generator=g)
            if isinstance(m, ConvLayer) and m.bn is not None:
                m.bn.reset_parameters()

    def forward(self, x):
        if self.iq is not None:
            x = self.iq(x)
        for m in self.layers:
            if isinstance(m, LinearLayer):
                x = x.flatten(1)
            x = m(x)
        return x


# ---------------------------------------------------------------- ONNX -> torch

def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def from_onnx(model: onnx.ModelProto) -> TorchNet:
    """Build the float `TorchNet` of a Conv/BN/ReLU chain model (see the module doc)."""
    g = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(_attrs(n)["value"])
    inputs = [i for i in g.input if i.name not in consts]
    if len(inputs) != 1:
        raise ModelError(f"expected one model input, found {len(inputs)}")
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or any(d <= 0 for d in dims[1:]):
        raise ModelError(f"input '{inputs[0].name}' must be NCHW with static C, H, W; got {dims}")

    def const(name: str, node) -> np.ndarray:
        if name not in consts:
            raise UnsupportedOpError(node.name, node.op_type, f"'{name}' is not a constant")
        return consts[name]

    layers: list[nn.Module] = []
    flatten_name = "flatten"
    cur = inputs[0].name
    for idx, node in enumerate(n for n in g.node if n.op_type != "Constant"):
        op, at, name = node.op_type, _attrs(node), node.name or f"{node.op_type}_{idx}"
        if not node.input or node.input[0] != cur:
            raise UnsupportedOpError(name, op, "the model is not a single chain of layers")
        last = layers[-1] if layers else None
        if op == "Conv":
            layers.append(_conv_from_onnx(node, name, at, const))
        elif op == "BatchNormalization":
            if not isinstance(last, ConvLayer) or last.bn is not None or last.act is not None:
                raise UnsupportedOpError(name, op, "batch-norm must directly follow a conv")
            if at.get("training_mode", 0):
                raise UnsupportedOpError(name, op, "training_mode=1")
            gamma, beta, mean, var = (const(t, node) for t in node.input[1:5])
            last.set_bn(name, gamma, beta, mean, var, float(at.get("epsilon", 1e-5)))
        elif op in ("Relu", "Clip"):
            if not isinstance(last, ConvLayer) or last.act is not None:
                raise UnsupportedOpError(name, op, "activation must follow a conv (+ batch-norm)")
            if op == "Clip":
                lo = const(node.input[1], node).item() if len(node.input) > 1 and node.input[1] \
                    else -np.inf
                hi = const(node.input[2], node).item() if len(node.input) > 2 and node.input[2] \
                    else np.inf
                if lo != 0.0 or not np.isfinite(hi) or hi <= 0:
                    raise UnsupportedOpError(name, op, f"Clip({lo}, {hi}): only Clip(0, M) "
                                             "with 0 < M < inf (ReLU6-like)")
                last.act, last.clip_max = "clip", hi
            else:
                last.act = "relu"
            last.act_name = name
        elif op == "GlobalAveragePool":
            if not isinstance(last, ConvLayer):
                raise UnsupportedOpError(name, op, "pooling must follow a conv layer")
            layers.append(PoolLayer(name))
        elif op in ("Reshape", "Flatten"):
            if not isinstance(last, PoolLayer):
                raise UnsupportedOpError(name, op, "only the flatten after global pooling")
            flatten_name = name
        elif op == "Gemm":
            if not isinstance(last, PoolLayer):
                raise UnsupportedOpError(name, op, "the classifier must follow global pooling "
                                         "and a flatten")
            if at.get("transA", 0) or at.get("alpha", 1.0) != 1.0 or at.get("beta", 1.0) != 1.0:
                raise UnsupportedOpError(name, op, "transA/alpha/beta other than defaults")
            w = const(node.input[1], node)
            w = w if at.get("transB", 0) else w.T
            b = const(node.input[2], node) if len(node.input) > 2 and node.input[2] else None
            if b is not None and b.shape != (w.shape[0],):
                raise UnsupportedOpError(name, op, f"bias of shape {b.shape}")
            layers.append(LinearLayer(name, w, b))
        else:
            raise UnsupportedOpError(name, op, "outside the supported Conv/BN/ReLU/"
                                     "GlobalAveragePool/Gemm chain")
        cur = node.output[0]
    if not layers or not isinstance(layers[-1], LinearLayer):
        raise ModelError("the model must end with a Gemm classifier after global pooling")
    if cur != g.output[0].name:
        raise ModelError(f"the model output '{g.output[0].name}' is not the chain's end")
    return TorchNet(g.name or "model", tuple(dims[1:]), layers, flatten_name)


def _conv_from_onnx(node, name, at, const) -> ConvLayer:
    w = const(node.input[1], node)
    b = const(node.input[2], node) if len(node.input) > 2 and node.input[2] else None
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise UnsupportedOpError(name, "Conv", f"weights {w.shape}: only square 2-D kernels")
    if at.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise UnsupportedOpError(name, "Conv", "auto_pad (use explicit pads)")
    if any(d != 1 for d in at.get("dilations", [1, 1])):
        raise UnsupportedOpError(name, "Conv", "dilations")
    pads, strides = list(at.get("pads", [0, 0, 0, 0])), list(at.get("strides", [1, 1]))
    if len(set(pads)) != 1 or len(set(strides)) != 1:
        raise UnsupportedOpError(name, "Conv", f"pads {pads} / strides {strides} not uniform")
    groups = int(at.get("group", 1))
    cout, cin_g, k, _ = w.shape
    if groups == 1:
        kind = "pointwise" if k == 1 and pads[0] == 0 else "conv"
    elif cin_g == 1 and cout == groups:
        kind = "depthwise"
    else:
        raise UnsupportedOpError(name, "Conv", f"group={groups}")
    return ConvLayer(name, kind, w, b, int(strides[0]), int(pads[0]), groups)


# ---------------------------------------------------------------- torch -> ONNX

def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def to_float_onnx(net: TorchNet, batch: int | None = 1) -> onnx.ModelProto:
    """The float model (quantizers ignored) as ONNX with the zoo's names; `batch=None`
    gives a symbolic batch dimension."""
    nodes, inits = [], []

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    x = "input"
    for m in net.layers:
        if isinstance(m, ConvLayer):
            ins = [x, init(f"{m.name}.weight", _np(m.weight))]
            if m.bias is not None:
                ins.append(init(f"{m.name}.bias", _np(m.bias)))
            k = int(m.weight.shape[2])
            nodes.append(helper.make_node("Conv", ins, [f"{m.name}.conv"], name=m.name,
                                          kernel_shape=[k, k], strides=[m.stride] * 2,
                                          pads=[m.pad] * 4, group=m.groups))
            x = f"{m.name}.conv"
            if m.bn is not None:
                bn = m.bn
                ins = [x] + [init(f"{m.name}.bn.{s}", _np(t)) for s, t in (
                    ("gamma", bn.weight), ("beta", bn.bias), ("mean", bn.running_mean),
                    ("var", bn.running_var))]
                nodes.append(helper.make_node("BatchNormalization", ins, [f"{m.name}.bn"],
                                              name=m.bn_name or f"{m.name}.bn", epsilon=bn.eps))
                x = f"{m.name}.bn"
            if m.act == "relu":
                nodes.append(helper.make_node("Relu", [x], [f"{m.name}.out"],
                                              name=m.act_name or f"{m.name}.relu"))
                x = f"{m.name}.out"
            elif m.act == "clip":
                lo = init(f"{m.name}.relu6.min", np.array(0.0, np.float32))
                hi = init(f"{m.name}.relu6.max", np.array(m.clip_max, np.float32))
                nodes.append(helper.make_node("Clip", [x, lo, hi], [f"{m.name}.out"],
                                              name=m.act_name or f"{m.name}.relu6"))
                x = f"{m.name}.out"
        elif isinstance(m, PoolLayer):
            nodes.append(helper.make_node("GlobalAveragePool", [x], [m.name], name=m.name))
            c = net.layers[-1].weight.shape[1]
            shape = init("flatten.shape", np.array([batch or -1, c], np.int64))
            nodes.append(helper.make_node("Reshape", [m.name, shape], ["flat"],
                                          name=net.flatten_name))
            x = "flat"
        else:
            ins = [x, init(f"{m.name}.weight", _np(m.weight)), init(f"{m.name}.bias",
                                                                    _np(m.bias))]
            nodes.append(helper.make_node("Gemm", ins, ["logits"], name=m.name, transB=1))
            x = "logits"
    b = batch if batch is not None else "N"
    graph = helper.make_graph(
        nodes, net.name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [b, *net.input_shape])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [b, net.num_classes])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", FLOAT_OPSET)],
                              producer_name="tvm-mpq", producer_version="0.1")
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model
