"""Fake quantizers (quantization-aware training) and their configuration from a plan.

Conventions (docs/quantization.md): rounding is round-half-to-even everywhere (torch.round
== numpy.rint == ONNX QuantizeLinear), and every fake-quantized value is computed as
`(q - Z) * S` in float32 with the same float32 S the QDQ export stores, so the exported
model reproduces the PyTorch forward exactly up to the float arithmetic of conv/BN.

- `PACT`: activations, learned clip a, y = clamp(round(x / S), 0, 2^Q-1) * S, S = a/(2^Q-1).
- `LearnedClipWeightQuant`: per-layer asymmetric weights with learned w_min <= 0 <= w_max.
- `PerChannelWeightQuant`: asymmetric per output channel, bounds from each channel's
  min/max (clamped to include 0).
- `InputQuant`: the network input, UINT8 scale 1/128 zero point 128.
- `LogitQuant`: the logits, INT8 symmetric, scale = calibrated max|logit| / 127.
- `SignedQuant`: activations without a ReLU (a conv-BN before a residual add, an add
  without ReLU): INT{Q} symmetric, zero point 0, learned clip a (max |x|),
  S = a / (2^(Q-1) - 1), y = clamp(round(x / S), -2^(Q-1), 2^(Q-1) - 1) * S.

Every quantizer has `bits`, `signed`, `zero_point` and `scale()` (the exported values).
`configure` walks the layers and lets each layer's face (quant/faces/) attach them.
"""

from __future__ import annotations

import torch
from torch import nn

from .qplan import LayerQ, layer_configs
from .torch_model import INPUT_BITS, INPUT_SCALE, INPUT_ZERO_POINT, TorchNet

PACT_INIT = 6.0
PACT_WEIGHT_DECAY = 1e-4
_MIN_SCALE = 1e-12


def levels(bits: int) -> int:
    return (1 << bits) - 1


# ---------------------------------------------------------------- autograd functions

class _PactFn(torch.autograd.Function):
    """Forward: clamp(round(x / S), 0, n) * S with S = a / n. Backward: straight-through
    inside (0, a); d/da = sum of the upstream gradient where x >= a."""

    @staticmethod
    def forward(ctx, x, a, n):
        s = a / n
        y = torch.clamp(torch.round(x / s), 0, n) * s
        ctx.save_for_backward(x, a)
        return y

    @staticmethod
    def backward(ctx, g):
        x, a = ctx.saved_tensors
        gx = g * ((x > 0) & (x < a)).to(g.dtype)
        ga = (g * (x >= a).to(g.dtype)).sum().reshape(a.shape)
        return gx, ga, None


class _RoundSTE(torch.autograd.Function):
    """clamp(round(x / s) + z, lo, hi) - z) * s with a straight-through gradient inside
    the representable range (s, z constants)."""

    @staticmethod
    def forward(ctx, x, s, z, lo, hi):
        q = torch.clamp(torch.round(x / s) + z, lo, hi)
        ctx.save_for_backward(x, s, z)
        ctx.lo, ctx.hi = lo, hi
        return (q - z) * s

    @staticmethod
    def backward(ctx, g):
        x, s, z = ctx.saved_tensors
        lo, hi = (ctx.lo - z) * s, (ctx.hi - z) * s
        return g * ((x >= lo) & (x <= hi)).to(g.dtype), None, None, None, None


class _AsymWeightFn(torch.autograd.Function):
    """Asymmetric weight fake-quantization with clip bounds lo <= 0 <= hi (scalars or
    per-channel, broadcastable). Straight-through for w inside [lo, hi]; d/dlo = sum of
    the gradient where w < lo, d/dhi = sum where w > hi (summed to the bounds' shape)."""

    @staticmethod
    def forward(ctx, w, lo, hi, n):
        u, s, z = asym_quantize(w, lo, hi, n)
        ctx.save_for_backward(w, lo, hi)
        return (u - z) * s

    @staticmethod
    def backward(ctx, g):
        w, lo, hi = ctx.saved_tensors
        below, above = (w < lo).to(g.dtype), (w > hi).to(g.dtype)
        gw = g * (1.0 - below - above)
        glo, ghi = g * below, g * above
        if lo.dim() == 0:
            glo, ghi = glo.sum(), ghi.sum()
        else:
            dims = tuple(range(1, w.dim()))
            glo, ghi = glo.sum(dims, keepdim=True), ghi.sum(dims, keepdim=True)
        return gw, glo, ghi, None


def asym_quantize(w: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, n: int):
    """The integer form of the weight convention: (u, S, Z) with S = (hi - lo) / n,
    Z = round(-lo / S), u = clamp(round(w / S) + Z, 0, n); w ~ S * (u - Z)."""
    s = torch.clamp((hi - lo) / n, min=_MIN_SCALE)
    z = torch.clamp(torch.round(-lo / s), 0, n)
    u = torch.clamp(torch.round(w / s) + z, 0, n)
    return u, s, z


# ---------------------------------------------------------------- modules

class PACT(nn.Module):
    signed, zero_point = False, 0

    def __init__(self, bits: int, init: float = PACT_INIT):
        super().__init__()
        self.bits = bits
        self.a = nn.Parameter(torch.tensor(float(init)))

    @property
    def n(self) -> int:
        return levels(self.bits)

    def clip(self) -> torch.Tensor:
        return torch.clamp(self.a, min=1e-3)

    def scale(self) -> torch.Tensor:
        """S_a = a / (2^Q - 1), float32 (the exported QuantizeLinear scale)."""
        return (self.clip() / self.n).detach()

    def forward(self, x):
        return _PactFn.apply(x, self.clip(), self.n)

    def requantize(self, y):
        """Re-quantize with this quantizer's scale and zero point 0 (pooling)."""
        s = self.scale()
        return _RoundSTE.apply(y, s, torch.zeros_like(s), 0, self.n)

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


class LearnedClipWeightQuant(nn.Module):
    """Per-layer asymmetric weights with learned clip bounds (init: min/max of w)."""

    per_channel = False

    def __init__(self, bits: int, w: torch.Tensor):
        super().__init__()
        self.bits = bits
        w = w.detach()
        self.w_min = nn.Parameter(torch.clamp(w.min(), max=0.0).clone())
        self.w_max = nn.Parameter(torch.clamp(w.max(), min=0.0).clone())

    def bounds(self, w):
        return torch.clamp(self.w_min, max=0.0), torch.clamp(self.w_max, min=0.0)

    def forward(self, w):
        lo, hi = self.bounds(w)
        return _AsymWeightFn.apply(w, lo, hi, levels(self.bits))

    def integer(self, w):
        """(u, S, Z) tensors: the stored weights, scale and zero point."""
        lo, hi = self.bounds(w)
        return asym_quantize(w.detach(), lo.detach(), hi.detach(), levels(self.bits))

    def extra_repr(self) -> str:
        return f"bits={self.bits}, per_layer"


class PerChannelWeightQuant(nn.Module):
    """Asymmetric per output channel (axis 0), bounds = the channel's min/max with 0."""

    per_channel = True

    def __init__(self, bits: int):
        super().__init__()
        self.bits = bits

    def bounds(self, w):
        flat = w.detach().reshape(w.shape[0], -1)
        shape = (-1,) + (1,) * (w.dim() - 1)
        lo = torch.clamp(flat.min(1).values, max=0.0).reshape(shape)
        hi = torch.clamp(flat.max(1).values, min=0.0).reshape(shape)
        return lo, hi

    def forward(self, w):
        lo, hi = self.bounds(w)
        return _AsymWeightFn.apply(w, lo, hi, levels(self.bits))

    def integer(self, w):
        lo, hi = self.bounds(w)
        return asym_quantize(w.detach(), lo, hi, levels(self.bits))

    def extra_repr(self) -> str:
        return f"bits={self.bits}, per_channel"


class InputQuant(nn.Module):
    """The network input: UINT8, scale 1/128, zero point 128 (q == raw pixel)."""

    bits, zero_point, signed = 8, INPUT_ZERO_POINT, False

    def scale(self) -> torch.Tensor:
        return torch.tensor(INPUT_SCALE, dtype=torch.float32)

    def forward(self, x):
        s = self.scale()
        return _RoundSTE.apply(x, s, torch.tensor(float(INPUT_ZERO_POINT)), 0, 255)


class LogitQuant(nn.Module):
    """INT8 symmetric logits: scale = absmax / 127 (calibrated), zero point 0. Training
    passes through; evaluation before calibration (absmax == 0) passes through too."""

    signed, zero_point = True, 0

    def __init__(self, bits: int = 8):
        super().__init__()
        self.bits = bits
        self.register_buffer("absmax", torch.tensor(0.0))

    @property
    def qmax(self) -> int:
        return (1 << (self.bits - 1)) - 1

    @property
    def calibrated(self) -> bool:
        return float(self.absmax) > 0

    def scale(self) -> torch.Tensor:
        return (self.absmax / self.qmax).to(torch.float32)

    def forward(self, y):
        if self.training or not self.calibrated:
            return y
        s = self.scale()
        return _RoundSTE.apply(y, s, torch.zeros_like(s), -self.qmax - 1, self.qmax)


class _SymClipFn(torch.autograd.Function):
    """Forward: clamp(round(x / S), -n-1, n) * S with S = a / n. Backward: straight-through
    inside (-a, a); d/da = sum of g * sign(x) where |x| >= a (the gradient of clamp(x, -a, a))."""

    @staticmethod
    def forward(ctx, x, a, n):
        s = a / n
        ctx.save_for_backward(x, a)
        return torch.clamp(torch.round(x / s), -n - 1, n) * s

    @staticmethod
    def backward(ctx, g):
        x, a = ctx.saved_tensors
        gx = g * (x.abs() < a).to(g.dtype)
        ga = (g * torch.sign(x) * (x.abs() >= a).to(g.dtype)).sum().reshape(a.shape)
        return gx, ga, None


class SignedQuant(nn.Module):
    """INT{Q} symmetric activations (no ReLU before them): learned clip a = max |x|
    (initial 6.0 like PACT, or calibrated), S = a / (2^(Q-1) - 1), zero point 0."""

    signed, zero_point = True, 0

    def __init__(self, bits: int, init: float = PACT_INIT):
        super().__init__()
        self.bits = bits
        self.a = nn.Parameter(torch.tensor(float(init)))

    @property
    def n(self) -> int:
        return (1 << (self.bits - 1)) - 1

    def clip(self) -> torch.Tensor:
        return torch.clamp(self.a, min=1e-3)

    def scale(self) -> torch.Tensor:
        return (self.clip() / self.n).detach()

    def forward(self, x):
        return _SymClipFn.apply(x, self.clip(), self.n)

    def requantize(self, y):
        """Re-quantize with this quantizer's scale and zero point 0 (pooling)."""
        s = self.scale()
        return _RoundSTE.apply(y, s, torch.zeros_like(s), -self.n - 1, self.n)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, signed"


def activation_quant(bits: int, relu: bool, init: float = PACT_INIT) -> nn.Module:
    """PACT after a ReLU / Clip(0, M), `SignedQuant` otherwise."""
    return PACT(bits, init) if relu else SignedQuant(bits, init)


def weight_quant(q: LayerQ, w0: torch.Tensor) -> nn.Module:
    """The plan's weight quantizer: per channel (MixPC) or learned per-layer clips."""
    if q.per_channel:
        return PerChannelWeightQuant(q.w_bits)
    with torch.no_grad():
        return LearnedClipWeightQuant(q.w_bits, w0.detach())


# ---------------------------------------------------------------- configuration

def configure(net: TorchNet, plan: dict) -> dict[str, LayerQ]:
    """Attach the plan's quantizers to `net` (in place) and return its layer configs.

    Each layer's face decides (quant/faces/): weight-quantizer bounds are initialized
    from the current (float) weights, folded with the current batch-norm statistics for
    layers with icn=false; PACT / signed clips start at 6.0 (or the layer's clip value);
    pooling and max pooling reuse their input's quantizer, an add gets its own at the
    bits of the tensor it carries. Calibrate (`calibrate.calibrate`) or train afterwards."""
    from ..memory.liveness import tensor_sources
    from .faces import face_of
    from .faces.base import QuantCtx

    if net.quantized:
        raise ValueError("the model is already quantized")
    cfg = layer_configs(plan, net)
    wl = net.weight_layers()
    bits = {t: INPUT_BITS if k is None else cfg[wl[k].name].out_bits
            for t, k in tensor_sources(net).items()}
    net.iq = InputQuant()
    ctx = QuantCtx(cfg, bits, {net.input_name: net.iq}, net.output_name)
    for m in net.layers:
        face_of(m).configure(m, cfg.get(m.name), ctx)
    net.plan = plan
    return cfg


def param_groups(net: TorchNet, lr: float) -> list[dict]:
    """Adam parameter groups: PACT / signed clips with weight decay 1e-4, everything else
    without."""
    pact = [m.aq.a for m in net.layers if getattr(m, "aq", None) is not None]
    ids = {id(p) for p in pact}
    rest = [p for p in net.parameters() if id(p) not in ids]
    groups = [{"params": rest, "lr": lr, "weight_decay": 0.0}]
    if pact:
        groups.append({"params": pact, "lr": lr, "weight_decay": PACT_WEIGHT_DECAY})
    return groups
