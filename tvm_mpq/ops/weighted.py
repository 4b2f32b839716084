"""The faces every operator with weights shares (conv2d, linear): the kernel ABI and the
packing of weights and per-channel ICN parameters.

Kernel ABI (every kernel returns 0):
    int32_t mpq_<kind>_<in>_<out>_w<w>_<suffix>(const uint8_t *x, const uint8_t *w,
        const int8_t|uint8_t *w_zero, const int32_t *bias, const int32_t *m0,
        const int8_t *n0, uint8_t *y [, uint8_t *scratch]);
Constants: weights packed along their last axis (`weight_shape`), then when an output
channel's weights are not a whole number of 32-bit words in a GEMM layout, 3 zero bytes
(the fast kernels read a row's partial last word whole); w_zero int8[Cout] (signed
weights) or uint8[Cout], bias int32[Cout], m0 int32[Cout], n0 int8[Cout].
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelError

_ARGS = ("const uint8_t *x", "const uint8_t *w", "const int16_t *w_zero",
         "const int32_t *bias", "const int32_t *m0", "const int8_t *n0", "uint8_t *y")


class WeightedOperator:
    """Mixin of the faces shared by weight operators; the operator supplies
    `weight_shape(spec)`, `kernel_weights(spec, w)` (Relax layout -> kernel layout) and
    `dsp_layout(spec)` ("gemm" when the kernel reads weights as im2col GEMM rows)."""

    has_weights = True

    def relax_weight_shape(self, spec) -> tuple:
        """The weights' shape as the integer Relax op holds them (before `kernel_weights`)."""
        raise NotImplementedError

    def golden_from_spec(self, spec, x, w, w_zero, bias, m0, n0):
        """The golden output of the kernel `spec` on unpacked x and Relax-layout weights."""
        raise NotImplementedError

    def c_args(self, spec) -> tuple[str, ...]:
        wz = "const int8_t *w_zero" if spec.w_signed else "const uint8_t *w_zero"
        return tuple(wz if a.endswith("*w_zero") else a for a in _ARGS)

    def kernel_weights(self, spec, w):
        return w

    def requant_flags(self, spec, consts):
        """Ties: decided with the accumulator's bound from the weights themselves (rules out
        more ties than the input range alone); shift_hi: every n0 <= -2."""
        from ..reference.icn import accumulator_max, ties_possible
        from ..reference.packing import int_range

        w, w_zero, bias, m0, n0 = consts         # w: (Cout, ...) unpacked
        lo, hi = int_range(spec.in_bits, spec.in_signed)
        amax = accumulator_max(w, w_zero, bias, max(spec.z_in - lo, hi - spec.z_in),
                               spec.acc_shift)
        return ties_possible(m0, n0, amax), bool(np.all(np.asarray(n0) <= -2))

    def pack_params(self, spec, consts):
        from ..codegen import kernel_dsp
        from ..codegen.kernels import int_le_bytes, value_range
        from ..reference.packing import pack

        w, w_zero, bias, m0, n0 = consts
        n_out = spec.out_shape[-1]
        w = self.kernel_weights(spec, np.asarray(w, np.int64))
        want = self.weight_shape(spec)
        if w.shape != want:
            raise ModelError(f"kernel {spec.name}: weights of shape {w.shape}, expected {want}")
        lo, hi = value_range(spec.w_bits, spec.w_signed)
        if w.size and (w.min() < lo or w.max() > hi):
            raise ModelError(f"kernel {spec.name}: weights outside [{lo}, {hi}]")
        wb = pack(w, spec.w_bits).tobytes()
        if self.dsp_layout(spec) == "gemm" and kernel_dsp.gemm_layout(spec)[0] % 4:
            wb += bytes(3)      # the assembly reads each row's last, partial word whole
        return {"w": ("uint8_t", wb),
                "w_zero": (("int8_t", int_le_bytes(w_zero, "i1", n_out, "w_zero"))
                           if spec.w_signed
                           else ("uint8_t", int_le_bytes(w_zero, "u1", n_out, "w_zero"))),
                "bias": ("int32_t", int_le_bytes(bias, "<i4", n_out, "bias")),
                "m0": ("int32_t", int_le_bytes(m0, "<i4", n_out, "m0")),
                "n0": ("int8_t", int_le_bytes(n0, "i1", n_out, "n0"))}
