"""MobileNetV1 (Howard et al. 2017, TF-slim layout) as a float ONNX model.

Layers: a 3x3 stride-2 convolution with 32*w channels, 13 depthwise-separable blocks
(3x3 depthwise + 1x1 pointwise, each followed by batch-norm and ReLU6), global average
pooling and a fully connected classifier. Convolutions carry no bias (batch-norm follows),
so every conv is Conv -> BatchNormalization -> Clip(0, 6).

Weights are synthetic and deterministic (seeded He-normal, batch-norm statistics near
identity) unless given. Small-input variants (resolution <= 64, for 28x28 / 32x32 images)
use a stride-1 first convolution, as the CIFAR versions of MobileNet do, so that the
feature maps do not collapse to 1x1 before the last blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 21

# (pointwise output channels at width 1.0, depthwise stride) of the 13 blocks.
BLOCKS = [
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
]
FIRST_CHANNELS = 32
WIDTHS = (0.25, 0.5, 0.75, 1.0)
IMAGENET_RESOLUTIONS = (128, 160, 192, 224)
SMALL_RESOLUTION_MAX = 64
BN_EPS = 1e-3


@dataclass(frozen=True)
class MobileNetV1Config:
    width: float
    resolution: int
    num_classes: int = 1000
    in_channels: int = 3

    @property
    def name(self) -> str:
        return f"mobilenet_v1_{width_str(self.width)}_{self.resolution}"

    @property
    def small_input(self) -> bool:
        return self.resolution <= SMALL_RESOLUTION_MAX

    def channels(self, c: int) -> int:
        # TF-slim's depth multiplier: int(c * w), at least 8.
        return max(8, int(c * self.width))


def width_str(width: float) -> str:
    """TF-slim's spelling of a width multiplier: 0.25, 0.5, 0.75, 1.0."""
    return "1.0" if width == 1.0 else f"{width:g}"


def _he(rng: np.random.Generator, shape, fan_in: int) -> np.ndarray:
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


class _Builder:
    def __init__(self, weights: dict[str, np.ndarray] | None, seed: int):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.given = dict(weights or {})
        self.used: set[str] = set()
        self.rng = np.random.default_rng(seed)

    def init(self, name: str, default: np.ndarray) -> str:
        arr = default
        if name in self.given:
            arr = np.asarray(self.given[name], dtype=np.float32)
            if arr.shape != default.shape:
                raise ValueError(f"weight '{name}': shape {arr.shape}, expected {default.shape}")
            self.used.add(name)
        self.inits.append(numpy_helper.from_array(arr.astype(np.float32), name))
        return name

    def conv_bn_relu6(self, name: str, x: str, cin: int, cout: int, k: int, stride: int,
                      group: int) -> str:
        w = self.init(f"{name}.weight", _he(self.rng, (cout, cin // group, k, k), cin // group * k * k))
        pad = k // 2
        self.nodes.append(helper.make_node(
            "Conv", [x, w], [f"{name}.conv"], name=f"{name}", kernel_shape=[k, k],
            strides=[stride, stride], pads=[pad, pad, pad, pad], group=group))
        gamma = self.init(f"{name}.bn.gamma", (1.0 + 0.1 * self.rng.standard_normal(cout)).astype(np.float32))
        beta = self.init(f"{name}.bn.beta", (0.1 * self.rng.standard_normal(cout)).astype(np.float32))
        mean = self.init(f"{name}.bn.mean", (0.05 * self.rng.standard_normal(cout)).astype(np.float32))
        var = self.init(f"{name}.bn.var", self.rng.uniform(0.5, 1.5, cout).astype(np.float32))
        self.nodes.append(helper.make_node(
            "BatchNormalization", [f"{name}.conv", gamma, beta, mean, var], [f"{name}.bn"],
            name=f"{name}.bn", epsilon=BN_EPS))
        lo = self.init(f"{name}.relu6.min", np.array(0.0, np.float32))
        hi = self.init(f"{name}.relu6.max", np.array(6.0, np.float32))
        self.nodes.append(helper.make_node(
            "Clip", [f"{name}.bn", lo, hi], [f"{name}.out"], name=f"{name}.relu6"))
        return f"{name}.out"


def build_mobilenet_v1(cfg: MobileNetV1Config, weights: dict[str, np.ndarray] | None = None,
                       seed: int = 0) -> onnx.ModelProto:
    """Build the float ONNX model; `weights` (initializer name -> array) overrides the
    synthetic ones, and every given name must exist in the model."""
    if cfg.width not in WIDTHS:
        raise ValueError(f"width {cfg.width} not in {WIDTHS}")
    if cfg.resolution < 8:
        raise ValueError(f"resolution {cfg.resolution} too small")
    b = _Builder(weights, seed)
    x = "input"
    c = cfg.channels(FIRST_CHANNELS)
    first_stride = 1 if cfg.small_input else 2
    x = b.conv_bn_relu6("conv0", x, cfg.in_channels, c, 3, first_stride, 1)
    for i, (cout_full, stride) in enumerate(BLOCKS, start=1):
        cout = cfg.channels(cout_full)
        x = b.conv_bn_relu6(f"block{i}.dw", x, c, c, 3, stride, c)
        x = b.conv_bn_relu6(f"block{i}.pw", x, c, cout, 1, 1, 1)
        c = cout
    b.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool"], name="pool"))
    shape = b.init("flatten.shape", np.array([1, c], np.int64))
    b.inits[-1] = numpy_helper.from_array(np.array([1, c], np.int64), shape)
    b.nodes.append(helper.make_node("Reshape", ["pool", shape], ["flat"], name="flatten"))
    fc_w = b.init("fc.weight", _he(b.rng, (cfg.num_classes, c), c))
    fc_b = b.init("fc.bias", np.zeros(cfg.num_classes, np.float32))
    b.nodes.append(helper.make_node("Gemm", ["flat", fc_w, fc_b], ["logits"], name="fc", transB=1))
    unused = set(b.given) - b.used
    if unused:
        raise ValueError(f"given weights not in the model: {sorted(unused)[:5]}")
    graph = helper.make_graph(
        b.nodes, cfg.name,
        [helper.make_tensor_value_info(
            "input", TensorProto.FLOAT, [1, cfg.in_channels, cfg.resolution, cfg.resolution])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, cfg.num_classes])],
        b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="tvm-mpq", producer_version="0.1")
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model
