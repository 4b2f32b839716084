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
