"""The project's own error types.

`MpqError` is an error the *user* can cause (a bad file, an unsupported operator, an
impossible memory budget, a wrong input shape). The CLI prints it as one line on stderr
and exits with code 2. Anything else that escapes is a bug and keeps its traceback.
"""


class MpqError(Exception):
    """A user-facing error: one clear line, exit code 2."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def one_line(self) -> str:
        msg = " ".join(str(self).split())
        if self.hint:
            msg += f" ({' '.join(self.hint.split())})"
        return msg


class ModelError(MpqError):
    """The model file is missing, malformed or uses something the flow does not support."""


class UnsupportedOpError(ModelError):
    """An operator (or an attribute of one) the flow cannot compile."""

    def __init__(self, node_name: str, op_type: str, detail: str = ""):
        what = f"unsupported operator {op_type} at node '{node_name}'"
        super().__init__(what + (f": {detail}" if detail else ""))
        self.node_name = node_name
        self.op_type = op_type


class BudgetError(MpqError):
    """No precision assignment makes the model fit the memory budget."""


class PlanError(MpqError):
    """A plan JSON that is malformed or does not match the model."""


class InputError(MpqError):
    """Runtime input of the wrong shape, dtype or format."""


class TargetError(MpqError):
    """Building or running firmware failed: a missing tool, an image that does not fit the
    MCU, a fault or timeout on the (emulated) board."""
