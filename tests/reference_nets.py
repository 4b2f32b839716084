"""The TinyML reference networks, re-created in PyTorch the way their users write them,
and exported as those users export them (torch.onnx.export, a dynamic batch dimension).

    resnet8         MLPerf Tiny image classification: 32x32x3, conv 16, three stacks of two
                    3x3 convs (16/32/64, strides 1/2/2), 1x1 stride-2 projections, 10 classes
    ds_cnn          MLPerf Tiny keyword spotting: 49x10x1 MFCC, conv 10x4 stride 2 (64),
                    four depthwise-separable blocks, average pool, 12 classes
    mobilenet_v1    MLPerf Tiny visual wake words: MobileNetV1 width 0.25, 96x96x3, 2 classes
    autoencoder     MLPerf Tiny anomaly detection: 640-128x4-8-128x4-640, BN + ReLU
    mobilenet_v2    MobileNetV2 width 0.35 (torchvision's channel rounding), 96x96x3
    tutorial_cnn    the PyTorch tutorial CNN: Conv-ReLU-MaxPool x2, Flatten, Gemm-ReLU, Gemm

Used by tests/test_reference_nets.py and bench/models.py. Weights are PyTorch's default
initialization from a fixed seed (no pretrained weights are available offline).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _cbr(cin, cout, k, stride=1, pad=None, groups=1, act=nn.ReLU):
    pad = k // 2 if pad is None else pad
    return [nn.Conv2d(cin, cout, k, stride, pad, groups=groups, bias=False),
            nn.BatchNorm2d(cout), act()]


class _ResBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.body = nn.Sequential(*_cbr(cin, cout, 3, stride),
                                  nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(cout))
        self.proj = None if stride == 1 and cin == cout else nn.Conv2d(cin, cout, 1, stride)

    def forward(self, x):
        skip = x if self.proj is None else self.proj(x)
        return F.relu(self.body(x) + skip)


class ResNet8(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(*_cbr(3, 16, 3))
        self.stacks = nn.Sequential(_ResBlock(16, 16, 1), _ResBlock(16, 32, 2),
                                    _ResBlock(32, 64, 2))
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = F.avg_pool2d(self.stacks(self.stem(x)), 8)
        return self.fc(x.flatten(1))


class DSCNN(nn.Module):
    def __init__(self, classes=12):
        super().__init__()
        layers = _cbr(1, 64, (10, 4), 2, (5, 1))
        for _ in range(4):
            layers += _cbr(64, 64, 3, groups=64) + _cbr(64, 64, 1)
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.body(x), 1).flatten(1))


class MobileNetV1(nn.Module):
    def __init__(self, width=0.25, classes=2):
        super().__init__()
        cfg = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 \
            + [(1024, 2), (1024, 1)]
        c = int(32 * width)
        layers = _cbr(3, c, 3, 2)
        for out, s in cfg:
            o = int(out * width)
            layers += _cbr(c, c, 3, s, groups=c) + _cbr(c, o, 1)
            c = o
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.body(x), 1).flatten(1))


def _divisible(v, d=8):
    n = max(d, int(v + d / 2) // d * d)
    return n + d if n < 0.9 * v else n


class _InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, t):
        super().__init__()
        hid = cin * t
        layers = (_cbr(cin, hid, 1, act=nn.ReLU6) if t != 1 else []) \
            + _cbr(hid, hid, 3, stride, groups=hid, act=nn.ReLU6) \
            + [nn.Conv2d(hid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.skip = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.skip else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, width=0.35, classes=2):
        super().__init__()
        c = _divisible(32 * width)
        layers = _cbr(3, c, 3, 2, act=nn.ReLU6)
        for t, ch, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                            (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
            o = _divisible(ch * width)
            for i in range(n):
                layers.append(_InvertedResidual(c, o, s if i == 0 else 1, t))
                c = o
        layers += _cbr(c, 1280, 1, act=nn.ReLU6)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def forward(self, x):
        return self.classifier(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


class Autoencoder(nn.Module):
    def __init__(self):
        super().__init__()
        dims = [640, 128, 128, 128, 128, 8, 128, 128, 128, 128]
        layers = []
        for a, b in zip(dims, dims[1:]):
            layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(128, 640)

    def forward(self, x):
        return self.out(self.body(x))


class TutorialCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1)
        self.fc1, self.fc2 = nn.Linear(16 * 7 * 7, 32), nn.Linear(32, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


NETS = {
    "resnet8": (ResNet8, (1, 3, 32, 32)),
    "ds_cnn": (DSCNN, (1, 1, 49, 10)),
    "mobilenet_v1": (MobileNetV1, (1, 3, 96, 96)),
    "autoencoder": (Autoencoder, (1, 640)),
    "mobilenet_v2": (MobileNetV2, (1, 3, 96, 96)),
    "tutorial_cnn": (TutorialCNN, (1, 1, 28, 28)),
}


def export(name: str, path, seed: int = 0):
    """Write reference network `name` as ONNX (TorchScript exporter, opset 17, dynamic
    batch) to `path`; returns the path."""
    cls, shape = NETS[name]
    torch.manual_seed(seed)
    model = cls().eval()
    torch.onnx.export(model, (torch.randn(*shape),), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    return path
