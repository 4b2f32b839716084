"""Post-training calibration of a configured (fake-quantized) `TorchNet`.

The calibration samples run through the network layer by layer with the quantizers of
the layers already calibrated switched on, so every clip is chosen for the inputs the
quantized network really produces:

- activations (PACT clip a): the `percentile` (default 99.99) of the layer's
  pre-activation values, capped at the float model's clip (6 for ReLU6); 100 = max;
  signed activations (no ReLU: a conv-BN before an add, an add without ReLU): the same
  percentile of |y|; a residual add's own quantizer from its sum;
- weights: per layer the min/max of the (folded, for icn=false) weights, per channel
  the channel min/max (that quantizer needs no state);
- logits: max |logit| (INT8 symmetric scale max/127).

`synthetic_inputs` gives random images, good for footprint and latency work only: the
clips then reflect noise, not data, and accuracy is meaningless.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..errors import InputError
from .faces import face_of
from .faces.base import CalibCtx
from .faces.base import percentile as _percentile  # noqa: F401 - the old name
from .torch_model import TorchNet

DEFAULT_PERCENTILE = 99.99
MAX_SAMPLES = 4096
MIN_SAMPLES = 16
MAX_ACT_ELEMENTS = 1 << 25          # ~128 MB per float32 activation tensor of the batch
log = logging.getLogger("tvm_mpq")


def synthetic_inputs(net: TorchNet, n: int, seed: int = 0) -> np.ndarray:
    """Random uint8-valued images in the model's input convention (x = (p - 128) / 128)."""
    rng = np.random.default_rng(seed)
    p = rng.integers(0, 256, size=(n, *net.input_shape))
    return ((p.astype(np.float32) - 128.0) / 128.0).astype(np.float32)


@torch.no_grad()
def _largest_activation(net: TorchNet) -> int:
    """Elements of the largest activation tensor of one sample (call in eval mode)."""
    most = [1]

    def step(m, xs):
        y = m(*xs)
        most[0] = max(most[0], y.numel())
        return y

    net.run(torch.zeros(1, *net.input_shape), step)
    return most[0]


@torch.no_grad()
def calibrate(net: TorchNet, x: np.ndarray | torch.Tensor, percentile: float = DEFAULT_PERCENTILE,
              reset_weights: bool = True) -> dict[str, float]:
    """Set the activation clips and the logit scale of `net` from samples `x` (float model
    input, NCHW or (N, K)); returns {layer: clip}. `reset_weights` re-initializes per-layer weight
    bounds to the min/max of the current weights."""
    if not net.quantized:
        raise ValueError("configure the model with a plan first (fake_quant.configure)")
    x = torch.as_tensor(np.asarray(x, np.float32))
    if x.ndim != len(net.input_shape) + 1 or tuple(x.shape[1:]) != net.input_shape:
        raise InputError(f"calibration data of shape {list(x.shape)}; the model takes "
                         f"[N, {', '.join(map(str, net.input_shape))}]")
    if len(x) == 0:
        raise InputError("no calibration samples")
    if not 0.0 < percentile <= 100.0:
        raise InputError(f"percentile {percentile} must be in (0, 100]")
    was_training = net.training
    net.eval()
    clips: dict[str, float] = {}
    try:
        n_max = min(MAX_SAMPLES, max(MIN_SAMPLES, MAX_ACT_ELEMENTS // _largest_activation(net)))
        if len(x) > n_max:
            log.info(f"calibrating on the first {n_max} of {len(x)} samples (memory bound: "
                     "the whole batch runs layer by layer)")
            x = x[:n_max]
        h = net.iq(x) if net.iq is not None else x
        ctx = CalibCtx(percentile, reset_weights, clips)
        net.run(h, lambda m, xs: face_of(m).calibrate(m, xs, ctx))
    finally:
        net.train(was_training)
    return clips


@torch.no_grad()
def calibrate_logits(net: TorchNet, x: torch.Tensor, batch_size: int = 512) -> float:
    """Set the logit scale from max |logit| of the fake-quantized model on `x`."""
    oq = net.output_quant()
    was_training = net.training
    net.eval()
    oq.absmax.zero_()               # uncalibrated: passes the logits through
    try:
        m = max(float(net(x[i:i + batch_size]).abs().max()) for i in range(0, len(x), batch_size))
    finally:
        net.train(was_training)
    oq.absmax.fill_(max(m, 1e-6))
    return m
