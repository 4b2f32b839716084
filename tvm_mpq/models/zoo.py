"""Model zoo: names like `mobilenet_v1_0.75_224` resolve to ONNX models built on the fly."""

from __future__ import annotations

import re

import onnx

from ..errors import ModelError
from .mobilenet_v1 import (IMAGENET_RESOLUTIONS, WIDTHS, MobileNetV1Config, build_mobilenet_v1,
                           width_str)

_NAME = re.compile(r"^mobilenet_v1_(?P<w>[0-9.]+)_(?P<res>[0-9]+)$")
SMALL_RESOLUTIONS = (28, 32)
# The largest weight tensor the zoo builds (16 Mi weights, 64 MiB as float): even at 2 bits
# it is twice the largest supported MCU's FLASH, and the float ONNX stays below protobuf's
# 2 GB limit. A larger --num-classes/--in-channels is a user error, not an out-of-memory.
MAX_LAYER_WEIGHTS = 1 << 24


def zoo_names() -> list[str]:
    """The standard names (ImageNet sizes and the small-input variants)."""
    names = [f"mobilenet_v1_{width_str(w)}_{r}" for w in WIDTHS for r in IMAGENET_RESOLUTIONS]
    names += [f"mobilenet_v1_{width_str(w)}_{r}" for w in WIDTHS for r in SMALL_RESOLUTIONS]
    return names


def is_zoo_name(name: str) -> bool:
    return _NAME.match(name) is not None


def zoo_config(name: str, num_classes: int | None = None,
               in_channels: int | None = None) -> MobileNetV1Config:
    m = _NAME.match(name)
    if not m:
        raise ModelError(f"'{name}' is neither an .onnx file nor a zoo model name",
                         hint="zoo names look like mobilenet_v1_0.75_224; see `tvm-mpq zoo`")
    w, res = float(m["w"]), int(m["res"])
    if w not in WIDTHS:
        raise ModelError(f"zoo model '{name}': width {m['w']} not in {', '.join(f'{x:g}' for x in WIDTHS)}")
    if res not in IMAGENET_RESOLUTIONS and res not in SMALL_RESOLUTIONS:
        raise ModelError(f"zoo model '{name}': resolution {res} not in "
                         f"{', '.join(map(str, IMAGENET_RESOLUTIONS + SMALL_RESOLUTIONS))}")
    if num_classes is None:
        num_classes = 10 if res in SMALL_RESOLUTIONS else 1000
    if num_classes < 1:
        raise ModelError(f"--num-classes must be >= 1, got {num_classes}")
    if in_channels is None:
        in_channels = 1 if res in SMALL_RESOLUTIONS else 3
    if in_channels < 1:
        raise ModelError(f"--in-channels must be >= 1, got {in_channels}")
    cfg = MobileNetV1Config(w, res, num_classes, in_channels)
    for opt, value, layer, n in (
            ("--num-classes", num_classes, "fc", num_classes * cfg.channels(1024)),
            ("--in-channels", in_channels, "conv0", in_channels * cfg.channels(32) * 9)):
        if n > MAX_LAYER_WEIGHTS:
            raise ModelError(f"zoo model '{name}': {opt} {value} gives layer '{layer}' {n:,} "
                             f"weights, more than the zoo builds ({MAX_LAYER_WEIGHTS:,}; no "
                             "microcontroller holds them)")
    return cfg


def zoo_model(name: str, num_classes: int | None = None, in_channels: int | None = None,
              seed: int = 0) -> onnx.ModelProto:
    return build_mobilenet_v1(zoo_config(name, num_classes, in_channels), seed=seed)
