"""Post-training calibration of a configured (fake-quantized) `TorchNet`.

The calibration samples run through the network layer by layer with the quantizers of
the layers already calibrated switched on, so every clip is chosen for the inputs the
quantized network really produces:

- activations (PACT clip a): the `percentile` (default 99.99) of the layer's
  pre-activation values, capped at the float model's clip (6 for ReLU6); 100 = max;
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
from .fake_quant import LearnedClipWeightQuant
from .torch_model import ConvLayer, LinearLayer, PoolLayer, TorchNet

DEFAULT_PERCENTILE = 99.99
MAX_SAMPLES = 4096
MIN_SAMPLES = 16
MAX_ACT_ELEMENTS = 1 << 25          # ~128 MB per float32 activation tensor of the batch
_MAX_PERCENTILE_VALUES = 1 << 24
log = logging.getLogger("tvm_mpq")


def synthetic_inputs(net: TorchNet, n: int, seed: int = 0) -> np.ndarray:
    """Random uint8-valued images in the model's input convention (x = (p - 128) / 128)."""
    rng = np.random.default_rng(seed)
    p = rng.integers(0, 256, size=(n, *net.input_shape))
    return ((p.astype(np.float32) - 128.0) / 128.0).astype(np.float32)


@torch.no_grad()
def _largest_activation(net: TorchNet) -> int:
    """Elements of the largest activation tensor of one sample (call in eval mode)."""
    h, most = torch.zeros(1, *net.input_shape), 1
    for m in net.layers:
        h = m.preact(h.flatten(1) if isinstance(m, LinearLayer) else h) \
            if not isinstance(m, PoolLayer) else m(h)
        most = max(most, h.numel())
    return most


def _percentile(y: torch.Tensor, pct: float, seed: int = 0) -> float:
    v = y.detach().reshape(-1)
    if pct >= 100.0:
        return float(v.max())
    if v.numel() > _MAX_PERCENTILE_VALUES:   # a fixed random subsample keeps it fast
        g = torch.Generator().manual_seed(seed)
        v = v[torch.randint(v.numel(), (_MAX_PERCENTILE_VALUES,), generator=g)]
    return float(np.percentile(v.numpy(), pct))


@torch.no_grad()
def calibrate(net: TorchNet, x: np.ndarray | torch.Tensor, percentile: float = DEFAULT_PERCENTILE,
              reset_weights: bool = True) -> dict[str, float]:
    """Set the activation clips and the logit scale of `net` from samples `x` (float model
    input, NCHW); returns {layer: clip}. `reset_weights` re-initializes per-layer weight
    bounds to the min/max of the current weights."""
    if not net.quantized:
        raise ValueError("configure the model with a plan first (fake_quant.configure)")
    x = torch.as_tensor(np.asarray(x, np.float32))
    if x.ndim != 4 or tuple(x.shape[1:]) != net.input_shape:
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
        for m in net.layers:
            if isinstance(m, PoolLayer):
                h = m(h)
                continue
            if isinstance(m, LinearLayer):
                h = h.flatten(1)
            if reset_weights and isinstance(m.wq, LearnedClipWeightQuant):
                w = m.folded()[0] if isinstance(m, ConvLayer) and m.fold else m.weight
                m.wq.w_min.copy_(torch.clamp(w.min(), max=0.0))
                m.wq.w_max.copy_(torch.clamp(w.max(), min=0.0))
            y = m.preact(h)
            if isinstance(m, ConvLayer):
                a = _percentile(y, percentile)
                if m.act == "clip":
                    a = min(a, m.clip_max)
                a = max(a, 1e-2)
                m.aq.a.copy_(torch.tensor(a))
                clips[m.name] = a
                h = m.aq(y)
            else:
                m.oq.absmax.copy_(torch.clamp(y.abs().max(), min=1e-6))
                clips[m.name] = float(m.oq.absmax)
                h = m.oq(y)
    finally:
        net.train(was_training)
    return clips


@torch.no_grad()
def calibrate_logits(net: TorchNet, x: torch.Tensor, batch_size: int = 512) -> float:
    """Set the logit scale from max |logit| of the fake-quantized model on `x`."""
    oq = net.layers[-1].oq
    was_training = net.training
    net.eval()
    oq.absmax.zero_()               # uncalibrated: passes the logits through
    try:
        m = max(float(net(x[i:i + batch_size]).abs().max()) for i in range(0, len(x), batch_size))
    finally:
        net.train(was_training)
    oq.absmax.fill_(max(m, 1e-6))
    return m
