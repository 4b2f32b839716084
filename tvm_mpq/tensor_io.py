"""Model inputs and outputs on the command line: `.npy` files or `random`."""

from __future__ import annotations

import os

import numpy as np

from .errors import InputError


def load_input(spec: str, float_shape: tuple[int, ...], q_dtype: str, quantize,
               seed: int = 0) -> np.ndarray:
    """Return the integer NHWC input of an integer model.

    `spec` is `random` (deterministic integers over the input type's range) or an `.npy`
    file holding either the float input in the ONNX model's layout `float_shape` (NCHW;
    quantized with the model's input scale and zero point by `quantize`) or the already
    quantized input as q_dtype in the same NCHW shape.
    """
    info = np.iinfo(q_dtype)
    if spec == "random":
        rng = np.random.default_rng(seed)
        x = rng.integers(info.min, info.max + 1, float_shape).astype(q_dtype)
        return np.transpose(x, (0, 2, 3, 1)) if x.ndim == 4 else x
    if not os.path.exists(spec):
        raise InputError(f"input file '{spec}' not found")
    try:
        x = np.load(spec, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise InputError(f"'{spec}' is not a .npy array: {e}") from None
    shape = tuple(float_shape)
    if x.shape != shape and x.shape == shape[1:]:
        x = x[None]
    if x.shape != shape:
        raise InputError(f"input '{spec}' has shape {x.shape}; the model expects "
                         f"{shape} (NCHW, batch 1)")
    if x.dtype.kind == "f":
        if not np.all(np.isfinite(x)):
            raise InputError(f"input '{spec}' contains NaN or Inf")
        return quantize(x)
    if x.dtype == np.dtype(q_dtype):
        return np.transpose(x, (0, 2, 3, 1)) if x.ndim == 4 else x
    raise InputError(f"input '{spec}' has dtype {x.dtype}; give float32 values or "
                     f"{q_dtype} quantized values")


def load_calibration_npy(path: str, input_shape: tuple[int, ...], n: int) -> np.ndarray:
    """Calibration inputs from an .npy file: float [N, C, H, W] model inputs, or raw
    28x28 uint8 images [N, 28, 28] (Fashion-MNIST layout)."""
    if not path.endswith(".npy"):
        raise InputError(f"--calib '{path}': expected fashion-mnist, synthetic or an .npy file")
    if not os.path.exists(path):
        raise InputError(f"calibration file '{path}' not found")
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"calibration file '{path}' is not a valid .npy array: {e}") from None
    if x.ndim == 3 and x.shape[1:] == (28, 28) and x.dtype == np.uint8:
        from .data.fashion_mnist import to_model_input

        x = to_model_input(x, input_shape[1], input_shape[0])
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(input_shape) or x.dtype.kind != "f":
        raise InputError(f"calibration file '{path}': array {list(x.shape)} {x.dtype}; the "
                         f"model takes float [N, {', '.join(map(str, input_shape))}]")
    if not np.all(np.isfinite(x)):
        raise InputError(f"calibration file '{path}' contains NaN or Inf")
    return x[:n].astype(np.float32)
