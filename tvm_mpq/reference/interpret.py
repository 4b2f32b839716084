"""Run an integer-only Relax module (the output of LegalizeRequantizeToICN) with the numpy
golden model: every mpq.* op is executed by its operator's golden face, independently of TVM's
code generation. This is the reference the host build and the firmware must equal.
"""

from __future__ import annotations

import numpy as np

from .. import ops
from .. import tvm_adapter as ta


def _attrs(call) -> dict:
    return {k: call.attrs[k] for k in call.attrs.keys()}


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
        try:
            op = ops.for_mpq_op(name)
        except ops.MissingFace:
            raise NotImplementedError(f"reference: no golden model for {name}") from None
        y = op.golden(name, args, a)
        env[var] = y.astype(dtype)
        if trace is not None and "name" in a:
            trace[str(a["name"])] = env[var]
    return env[func.body.body] if ta.is_var(func.body.body) else val(func.body.body)
