"""Fashion-MNIST (Xiao et al. 2017) from the Debian package `dataset-fashion-mnist`.

Images are 28x28 uint8 pixels p, 10 classes. The model input convention of the whole
project is x = (p - 128) / 128 (so the 8-bit quantized input with scale 1/128 and zero
point 128 is the raw pixel); `to_model_input` produces NCHW float32 in that convention,
zero-padded by 2 px (pixel value 0, i.e. x = -1) for 32x32 models and replicated to 3
channels for 3-channel models.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from ..errors import MpqError

DATA_DIR = Path(os.environ.get("TVM_MPQ_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
NUM_CLASSES = 10
RESOLUTION = 28
DATASETS = ("fashion-mnist",)
_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
_CACHE: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}


def load_fashion_mnist(split: str = "train", data_dir: str | os.PathLike | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 [N, 28, 28], labels int64 [N]) of `split` ('train' or 'test')."""
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    root = Path(data_dir) if data_dir is not None else DATA_DIR
    key = (str(root), split)
    if key in _CACHE:
        return _CACHE[key]
    img_path, lbl_path = (root / f for f in _FILES[split])
    for p in (img_path, lbl_path):
        if not p.is_file():
            raise MpqError(f"Fashion-MNIST file '{p}' not found",
                           hint="install the Debian package dataset-fashion-mnist "
                                "(apt-get install -y dataset-fashion-mnist) or run scripts/setup.sh")
    try:
        with gzip.open(img_path, "rb") as f:
            raw = f.read()
        images = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, RESOLUTION, RESOLUTION)
        with gzip.open(lbl_path, "rb") as f:
            labels = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    except (OSError, ValueError, EOFError) as e:
        raise MpqError(f"Fashion-MNIST file in '{root}' is corrupt: {e}",
                       hint="reinstall the Debian package dataset-fashion-mnist") from None
    if len(images) != len(labels):
        raise MpqError(f"Fashion-MNIST {split}: {len(images)} images but {len(labels)} labels")
    _CACHE[key] = (images, labels)
    return images, labels


def load_dataset(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The data sets the CLI knows by name (`--data fashion-mnist`)."""
    if name != "fashion-mnist":
        raise MpqError(f"unknown data set '{name}'", hint=f"known: {', '.join(DATASETS)}")
    return load_fashion_mnist(split)


def pixels_to_input(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 model input x = (p - 128) / 128 (exact in float32)."""
    return (pixels.astype(np.float32) - 128.0) / 128.0


def to_model_input(images: np.ndarray, resolution: int, channels: int) -> np.ndarray:
    """uint8 images [N, 28, 28] -> float32 [N, channels, resolution, resolution].

    resolution 28 keeps the image, 32 zero-pads 2 px on each side with pixel value 0;
    channels 1 or 3 (the gray image replicated)."""
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (RESOLUTION, RESOLUTION):
        raise MpqError(f"expected images of shape [N, 28, 28], got {list(images.shape)}")
    if resolution < RESOLUTION or (resolution - RESOLUTION) % 2:
        raise MpqError(f"a {resolution}x{resolution} model cannot take 28x28 Fashion-MNIST "
                       "images (resolution must be 28, 30, 32, ...)")
    if channels not in (1, 3):
        raise MpqError(f"a model with {channels} input channels cannot take gray images "
                       "(1 or 3 channels)")
    pad = (resolution - RESOLUTION) // 2
    if pad:
        images = np.pad(images, ((0, 0), (pad, pad), (pad, pad)), constant_values=0)
    x = pixels_to_input(images)[:, None]
    if channels == 3:
        x = np.repeat(x, 3, axis=1)
    return np.ascontiguousarray(x)
