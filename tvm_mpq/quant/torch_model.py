"""A PyTorch twin of a float ONNX model, and the way back.

`from_onnx` builds a `TorchNet` from the model's LayerGraph (frontend.graph): one module
per layer, built by the face of the layer's operator (quant/faces/, one file per
operator), run in the LayerGraph's order over a dict of
tensors keyed by its activation tensor ids. So any graph the frontend accepts works:
chains like the zoo's MobileNetV1, residual adds (with or without a ReLU after them),
tensors with several consumers, pooling anywhere, the flatten before a Gemm.

The modules keep the ONNX node names (`conv0`, `block1.dw`, ..., `pool`, `fc`) and copy
every weight; `to_float_onnx` writes the (trained) float model back with the zoo's node
and initializer names. The round trip is exact up to float rounding of the batch-norm
arithmetic.

The modules carry hooks for fake quantization (set by `fake_quant.configure`); with none
set the model is the float model.
"""

from __future__ import annotations

import math

import onnx
from onnx import TensorProto, helper, numpy_helper
import torch
from torch import nn

from ..errors import ModelError

FLOAT_OPSET = 21
# Input convention (docs/quantization.md): x = (p - 128) / 128, uint8 scale 1/128, zp 128.
INPUT_SCALE = 1.0 / 128.0
INPUT_ZERO_POINT = 128
INPUT_BITS = 8


class TorchNet(nn.Module):
    """The layer DAG; `layers` in execution order, each with its ONNX `.name`, its input
    tensor ids `.inputs` and output tensor id `.output` (those of the LayerGraph)."""

    def __init__(self, name: str, input_shape: tuple[int, int, int], layers: list[nn.Module],
                 input_name: str = "input", output_name: str | None = None):
        super().__init__()
        self.name = name
        self.input_shape = tuple(int(d) for d in input_shape)   # C, H, W
        self.layers = nn.ModuleList(layers)
        self.input_name = input_name
        self.output_name = output_name or layers[-1].output
        self.iq: nn.Module | None = None      # network input quantizer (8-bit, fixed)
        self.plan: dict | None = None         # the plan the quantizers were configured from
        last: dict[str, int] = {}
        for i, m in enumerate(self.layers):
            for t in m.inputs:
                last[t] = i
        # tensors that may be dropped after layer i (forward keeps memory to the live set)
        self._free = [[t for t in m.inputs if last[t] == i and t != self.output_name]
                      for i, m in enumerate(self.layers)]

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
        return [m for m in self.layers if m.has_weights]

    def freeze_bn(self) -> None:
        for m in self.layers:
            m.freeze_bn()

    def output_quant(self) -> nn.Module | None:
        return self.layers[-1].out_quant()

    def run(self, x, step=None) -> dict:
        """Execute the DAG on the (already input-quantized) `x`; `step(m, inputs)` replaces
        `m(*inputs)` when given (calibration). Returns the remaining tensors by id."""
        env = {self.input_name: x}
        for m, free in zip(self.layers, self._free):
            xs = [env[t] for t in m.inputs]
            env[m.output] = m(*xs) if step is None else step(m, xs)
            for t in free:
                env.pop(t, None)
        return env

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
            if m.has_weights:
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=g)
                if m.bias is not None:
                    bound = 1.0 / math.sqrt(m.weight[0].numel())
                    nn.init.uniform_(m.bias, -bound, bound, generator=g)
            if getattr(m, "bn", None) is not None:
                m.bn.reset_parameters()

    def forward(self, x):
        if self.iq is not None:
            x = self.iq(x)
        return self.run(x)[self.output_name]


# ---------------------------------------------------------------- ONNX -> torch

def from_onnx(model: onnx.ModelProto, graph=None) -> TorchNet:
    """Build the float `TorchNet` of `model` (see the module doc). `graph`: its LayerGraph
    (built from the validated model when not given)."""
    from ..frontend.graph import build_layer_graph
    from ..frontend.loader import validate
    from .faces import face_for
    from .faces.base import BuildCtx

    names = {n.name for n in model.graph.node}
    if graph is None or any(n not in names for la in graph.layers for n in la.nodes):
        model = validate(model)     # (a graph of another copy: unnamed nodes got names there)
        graph = build_layer_graph(model)
    g = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for n in g.node:                # Constant nodes, Identity of constants (torch writes them)
        if n.op_type == "Constant":
            value = next((a for a in n.attribute if a.name == "value"), None)
            if value is not None:
                consts[n.output[0]] = numpy_helper.to_array(value.t)
        elif n.op_type == "Identity" and n.input[0] in consts:
            consts[n.output[0]] = consts[n.input[0]]
    dims = list(graph.input_shape)
    if len(dims) not in (2, 4) or any(d <= 0 for d in dims[1:]):
        raise ModelError(f"input '{graph.input_name}' must be NCHW with static C, H, W or a "
                         f"(1, K) feature vector; got {dims}")
    ctx = BuildCtx(graph, consts, {n.name: n for n in g.node})
    layers = []
    for layer in graph.layers:
        layers.append(face_for(layer.kind, layer.name).build(layer, ctx))
        ctx.producers[layer.output] = layer
    return TorchNet(g.name or "model", tuple(dims[1:]), layers, graph.input_name,
                    graph.layers[-1].output)


# ---------------------------------------------------------------- torch -> ONNX

def to_float_onnx(net: TorchNet, batch: int | None = 1) -> onnx.ModelProto:
    """The float model (quantizers ignored) as ONNX with the zoo's names; `batch=None`
    gives a symbolic batch dimension."""
    from .faces import face_of
    from .faces.base import FloatCtx

    ctx = FloatCtx(batch, names={net.input_name: "input"})
    for m in net.layers:
        face_of(m).export_float(m, ctx)
    out = ctx.names[net.output_name]
    for n in ctx.nodes:
        n.output[:] = ["logits" if o == out else o for o in n.output]
        n.input[:] = ["logits" if i == out else i for i in n.input]
    b = batch if batch is not None else "N"
    graph = helper.make_graph(
        ctx.nodes, net.name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [b, *net.input_shape])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [b, net.num_classes])],
        ctx.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", FLOAT_OPSET)],
                              producer_name="tvm-mpq", producer_version="0.1")
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model
