"""Run an integer-only Relax module (the output of LegalizeRequantizeToICN) with the numpy
golden model: every mpq.* op is executed by `reference.ops`, independently of TVM's
code generation. This is the reference the host build and the firmware must equal.
"""

from __future__ import annotations

import numpy as np

from .. import tvm_adapter as ta
from . import ops


def _attrs(call) -> dict:
    return {k: call.attrs[k] for k in call.attrs.keys()}


def _i(a, k) -> int:
    return int(a[k])


def _shift(a) -> int:
    return int(a["acc_shift"]) if "acc_shift" in a else 0


def run_reference(mod, x: np.ndarray, *, trace: dict | None = None) -> np.ndarray:
    """Execute `main` on the integer input `x` (NHWC); returns the integer output.
    If `trace` is a dict, every layer's output is stored in it under the layer name."""
    func = mod["main"]
    env = {func.params[0]: np.asarray(x)}

    def val(e):
        return ta.constant_numpy(e) if ta.is_constant(e) else env[e]

    for var, call in ta.function_bindings(func):
        name = call.op.name if ta.is_call(call) else None
        if name is None:
            env[var] = val(call)
            continue
        dtype = str(var.ty.dtype)
        if name == "relax.reshape":
            env[var] = val(call.args[0]).reshape(ta.static_shape(var))
            continue
        args = [val(a) for a in call.args]
        a = _attrs(call)
        if name == "mpq.conv2d_icn":
            x_, w, wz, b, m0, n0 = args
            y = ops.conv2d(x_, w, wz, b, _i(a, "z_in"), _i(a, "stride"), _i(a, "pad"), m0, n0,
                           _i(a, "z_out"), _i(a, "q_min"), _i(a, "q_max"),
                           depthwise=bool(_i(a, "depthwise")), acc_shift=_shift(a))
        elif name == "mpq.linear_icn":
            x_, w, wz, b, m0, n0 = args
            y = ops.linear(x_, w, wz, b, _i(a, "z_in"), m0, n0, _i(a, "z_out"), _i(a, "q_min"),
                           _i(a, "q_max"), acc_shift=_shift(a))
        elif name == "mpq.avg_pool_icn":
            x_, m0, n0 = args
            y = ops.avg_pool(x_, _i(a, "kernel"), _i(a, "stride"), _i(a, "z_in"), m0, n0,
                             _i(a, "z_out"), _i(a, "q_min"), _i(a, "q_max"))
        elif name == "mpq.add_icn":
            y = ops.add(args[0], args[1], _i(a, "z_a"), _i(a, "z_b"), _i(a, "k_a"),
                        _i(a, "k_b"), _i(a, "shift"), _i(a, "z_out"), _i(a, "q_min"),
                        _i(a, "q_max"))
        else:
            raise NotImplementedError(f"reference: no golden model for {name}")
        env[var] = y.astype(dtype)
        if trace is not None and "name" in a:
            trace[str(a["name"])] = env[var]
    return env[func.body.body] if ta.is_var(func.body.body) else val(func.body.body)
