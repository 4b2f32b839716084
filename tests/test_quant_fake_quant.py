"""Fake quantizers against numpy and autograd references."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tvm_mpq.quant.fake_quant import (
    PACT,
    InputQuant,
    LearnedClipWeightQuant,
    LogitQuant,
    PerChannelWeightQuant,
    asym_quantize,
)

BITS = [8, 4, 2]


def _pact_numpy(x, a, bits):
    n = 2 ** bits - 1
    s = np.float32(a) / np.float32(n)
    return (np.clip(np.rint(x / s), 0, n) * s).astype(np.float32)


@settings(max_examples=60, deadline=None)
@given(bits=st.sampled_from(BITS), a=st.floats(0.05, 8.0), seed=st.integers(0, 2**31 - 1))
def test_pact_forward_matches_numpy(bits, a, seed):
    x = np.random.default_rng(seed).normal(0, 3, 257).astype(np.float32)
    q = PACT(bits, a)
    y = q(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_array_equal(y, _pact_numpy(x, np.float32(a), bits))
    levels = np.unique(np.rint(y / q.scale().numpy()))
    assert levels.min() >= 0 and levels.max() <= 2 ** bits - 1


@pytest.mark.parametrize("bits", BITS)
def test_pact_backward_is_clamp_gradient(bits):
    """STE inside (0, a); d/da = sum of upstream gradients where x >= a: the gradient of
    clamp(x, 0, a) (no ties at 0 or a in random data)."""
    g = torch.Generator().manual_seed(bits)
    x = torch.randn(4, 8, 5, 5, generator=g) * 3
    up = torch.randn(x.shape, generator=g)
    q = PACT(bits, 2.5)
    x1 = x.clone().requires_grad_(True)
    (q(x1) * up).sum().backward()
    a2 = torch.tensor(2.5, requires_grad=True)
    x2 = x.clone().requires_grad_(True)
    (torch.minimum(torch.relu(x2), a2) * up).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(q.a.grad, a2.grad)
    expected_ga = float((up * (x >= 2.5)).sum())
    assert abs(float(q.a.grad) - expected_ga) < 1e-4
    assert torch.equal(x1.grad, up * ((x > 0) & (x < 2.5)))


@settings(max_examples=60, deadline=None)
@given(bits=st.sampled_from(BITS), seed=st.integers(0, 2**31 - 1),
       shift=st.floats(-0.5, 0.5))
def test_per_layer_weights_round_trip(bits, seed, shift):
    w = torch.from_numpy(np.random.default_rng(seed).normal(shift, 0.3, (6, 3, 3, 3))
                         .astype(np.float32))
    q = LearnedClipWeightQuant(bits, w)
    u, s, z = q.integer(w)
    n = 2 ** bits - 1
    lo, hi = min(float(w.min()), 0.0), max(float(w.max()), 0.0)
    assert float(s) == pytest.approx((hi - lo) / n, rel=1e-6)
    assert float(z) == np.rint(-lo / float(s)) and 0 <= float(z) <= n
    assert float(u.min()) >= 0 and float(u.max()) <= n and torch.equal(u, torch.round(u))
    wq = q(w).detach()
    assert torch.equal(wq, (u - z) * s)                      # the exported form, bit for bit
    err = (wq - w).abs() / s
    inside = (w >= (0 - z) * s) & (w <= (n - z) * s)         # the representable range
    assert float(err[inside].max()) <= 0.5 + 1e-4 and float(err.max()) <= 1.0 + 1e-4
    assert torch.equal(q(wq), wq)                             # idempotent on the grid
    # numpy reference of the convention
    un = np.clip(np.rint(w.numpy() / s.numpy()) + z.numpy(), 0, n)
    np.testing.assert_array_equal(u.numpy(), un)


def test_learned_clip_gradients():
    w = torch.tensor([-1.0, -0.2, 0.1, 0.4, 0.9, 1.5])
    q = LearnedClipWeightQuant(4, w)
    with torch.no_grad():
        q.w_min.fill_(-0.5)
        q.w_max.fill_(1.0)
    wr = w.clone().requires_grad_(True)
    up = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    (q(wr) * up).sum().backward()
    assert torch.equal(wr.grad, torch.tensor([0.0, 2.0, 3.0, 4.0, 5.0, 0.0]))
    assert float(q.w_min.grad) == 1.0 and float(q.w_max.grad) == 6.0
    # the bounds always keep 0 inside
    with torch.no_grad():
        q.w_min.fill_(0.3)
    lo, hi = q.bounds(w)
    assert float(lo.detach()) == 0.0 and float(hi.detach()) == 1.0


@pytest.mark.parametrize("bits", BITS)
def test_per_channel_weights(bits):
    rng = np.random.default_rng(bits)
    w = torch.from_numpy((rng.normal(0, 1, (5, 4, 3, 3)) * rng.uniform(0.01, 2, (5, 1, 1, 1)))
                         .astype(np.float32))
    w[2] = w[2].abs()             # a channel without negatives: its min is clamped to 0
    q = PerChannelWeightQuant(bits)
    u, s, z = q.integer(w)
    assert s.shape == (5, 1, 1, 1) and z.shape == (5, 1, 1, 1)
    n = 2 ** bits - 1
    assert float(z[2]) == 0
    for c in range(5):
        lo, hi = min(float(w[c].min()), 0), max(float(w[c].max()), 0)
        assert float(s[c]) == pytest.approx((hi - lo) / n, rel=1e-6)
        assert float(u[c].min()) >= 0 and float(u[c].max()) <= n
    wq = q(w)
    assert torch.equal(wq, (u - z) * s)
    assert float(((wq - w).abs() / s).max()) <= 1.0 + 1e-4   # per-channel error <= 1 step
    wr = w.clone().requires_grad_(True)
    q(wr).sum().backward()
    assert torch.equal(wr.grad, torch.ones_like(w))           # STE: no clipping per channel


def test_input_and_logit_quantizers():
    p = torch.arange(256, dtype=torch.float32)
    x = (p - 128) / 128
    assert torch.equal(InputQuant()(x), x)                    # q == raw pixel, exact
    lq = LogitQuant()
    y = torch.tensor([-3.0, -1.01, 0.0, 0.5, 2.0])
    assert torch.equal(lq.eval()(y), y)                       # uncalibrated: pass-through
    lq.absmax.fill_(2.0)
    s = torch.tensor(2.0) / 127
    want = torch.clamp(torch.round(y / s), -128, 127) * s
    assert torch.equal(lq(y), want) and lq(y)[0] == want[0] == torch.tensor(-128.0) * s


def test_asym_quantize_degenerate():
    w = torch.zeros(3, 3)
    u, s, z = asym_quantize(w, torch.tensor(0.0), torch.tensor(0.0), 15)
    assert torch.all((u - z) * s == 0) and float(s) > 0
