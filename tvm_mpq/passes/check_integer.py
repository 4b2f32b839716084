"""CheckIntegerOnly: verify that no float tensor or float op remains in `main`.

Must run after: LegalizeRequantizeToICN. Raises a ModelError naming the first offending
op (and the ONNX node when the op carries one). Changes nothing.
"""

from __future__ import annotations

from .. import ops
from .. import tvm_adapter as ta
from ..errors import ModelError


def check_integer_only(mod) -> None:
    allowed = set(ops.mpq_ops()) | {"relax.reshape"}
    func = mod["main"]
    for p in func.params:
        _check_dtype(p, f"input '{p.name}'")
    for var, val in ta.function_bindings(func):
        if ta.is_call(val):
            name = val.op.name
            if name not in allowed:
                raise ModelError(f"a non-integer op remains after conversion: {name}")
        _check_dtype(var, f"tensor '{var.name}'")


def _check_dtype(expr, what: str) -> None:
    dtype = str(getattr(expr.ty, "dtype", ""))
    if dtype and not (dtype.startswith("int") or dtype.startswith("uint")):
        raise ModelError(f"{what} is {dtype} after conversion: the model is not integer-only")
