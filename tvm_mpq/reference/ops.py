"""The golden models of the operators, gathered for tests and benches.

Each operator's integer semantics is written once, in its module under tvm_mpq/ops/; the
TVM kernels and the generated C must match it bit for bit. Activations are NHWC integer
arrays (unpacked), batch 1. Weights are OHWI (conv, pointwise); depthwise weights are
(C, KH, KW, 1); linear weights are (Cout, Cin). Zero points: `z_in` scalar, `w_zero` per
output channel.

    acc[c]  = (sum (x - z_in) * (w[c] - w_zero[c])) << acc_shift + bias[c]     (int32)
    y[c]    = requantize(acc[c], m0[c], n0[c], z_out, q_min, q_max)    (see icn.py)

`acc_shift` (per layer, 0..12) gives the bias fractional bits: the bias is stored in units
of 2^-acc_shift accumulator steps, and the multiplier is M / 2^acc_shift. Without it, the
bias rounded to whole accumulator steps moves outputs by up to M/2 LSB (with 2-bit
weights, a visible fraction of them); the converter picks the largest shift for which the
worst-case accumulator still fits int32.
"""

from __future__ import annotations

from ..ops.add import add
from ..ops.avg_pool import avg_pool
from ..ops.conv2d import conv2d, conv2d_acc
from ..ops.linear import linear
from ..ops.max_pool import max_pool
from .icn import INT32_MAX, INT32_MIN

__all__ = ["add", "avg_pool", "conv2d", "conv2d_acc", "linear", "max_pool", "INT32_MAX",
           "INT32_MIN"]
