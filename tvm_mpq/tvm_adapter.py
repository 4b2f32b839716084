"""The one place that imports TVM internals.

TVM renames modules between releases (tir -> tirx / s_tir in 0.27, Relay and microTVM
removed). Every other module of tvm-mpq goes through the names defined here, so the next
rename touches this file only. TVM is imported lazily: `tvm-mpq inspect` or `plan`
do not pay for it.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np


@functools.lru_cache(maxsize=None)
def tvm():
    import tvm as _tvm

    return _tvm


def relax():
    from tvm import relax as _relax

    return _relax


def tirx():
    from tvm import tirx as _tirx

    return _tirx


def s_tir():
    from tvm import s_tir as _s_tir

    return _s_tir


def te():
    from tvm import te as _te

    return _te


def host_target():
    return tvm().target.Target("llvm")


def cortex_m7_target():
    """LLVM target for the Cortex-M7 with the hard-float ABI (arm-none-eabi-ld needs it)."""
    return tvm().target.Target({"kind": "llvm", "mtriple": "thumbv7em-none-eabihf",
                                "mcpu": "cortex-m7", "mfloat-abi": "hard"})


def onnx_to_relax(model, keep_params_in_input: bool = False):
    """Import an ONNX model with TVM's Relax ONNX frontend; returns an IRModule."""
    from tvm.relax.frontend.onnx import from_onnx

    return from_onnx(model, keep_params_in_input=keep_params_in_input)


def build_relax_host(mod):
    """Compile a Relax IRModule for the host CPU; returns a callable `f(*np arrays)`."""
    relax_ = relax()
    t = host_target()
    mod = relax_.transform.DecomposeOpsForInference()(mod)
    mod = relax_.transform.LegalizeOps()(mod)
    ex = tvm().compile(mod, target=t)
    vm = relax_.VirtualMachine(ex, tvm().cpu())

    def run(*arrays: np.ndarray, entry: str = "main") -> Any:
        args = [tvm().runtime.tensor(np.ascontiguousarray(a)) for a in arrays]
        out = vm[entry](*args)
        return _to_numpy(out)

    return run


def _to_numpy(out):
    if isinstance(out, (list, tuple)) or type(out).__name__ in ("Array", "Tuple"):
        return [_to_numpy(o) for o in out]
    return out.numpy()


def register_relax_op(name: str, num_inputs: int, infer_type, legalize, doc: str = ""):
    """Register a project Relax operator (idempotent: a re-registration keeps the first)."""
    tvm_ = tvm()
    try:
        op = tvm_.ir.Op.get(name)
        return op
    except Exception:  # noqa: BLE001 - TVM raises a generic error for unknown ops
        pass
    tvm_.ir._ffi_api.RegisterOp(name, doc)
    op = tvm_.ir.Op.get(name)
    op.set_num_inputs(num_inputs)
    op.set_attr("FPurity", True)
    op.set_attr("FInferType", infer_type)
    op.set_attr("FLegalize", legalize)
    return op


def tensor_type(shape, dtype: str):
    return relax().TensorType([int(s) for s in shape], dtype)


def static_shape(expr) -> tuple[int, ...]:
    return tuple(int(s) for s in expr.ty.shape)


def const(array: np.ndarray):
    return relax().const(np.ascontiguousarray(array))


def is_constant(expr) -> bool:
    return isinstance(expr, tvm().ir.expr.GenericConst)


def constant_numpy(expr) -> np.ndarray:
    return expr.value.numpy()


def is_var(expr) -> bool:
    return isinstance(expr, relax().Var)


def is_call(expr, op_name: str | None = None) -> bool:
    if not isinstance(expr, relax().Call) or not hasattr(expr.op, "name"):
        return False
    return op_name is None or expr.op.name == op_name


def is_tuple_get_item(expr) -> bool:
    return isinstance(expr, relax().TupleGetItem)


def function_bindings(func):
    """(var, value) pairs of a Relax function's body, in order, over all blocks."""
    return [(b.var, b.value) for block in func.body.blocks for b in block.bindings]


def attr(call, name: str, default=None):
    attrs = call.attrs
    if attrs is None:
        return default
    try:
        v = getattr(attrs, name)
    except AttributeError:
        try:
            v = attrs[name]
        except Exception:  # noqa: BLE001
            return default
    return v


def module_pass(name: str):
    """Decorator: a Python function IRModule -> IRModule as a TVM module pass."""
    return tvm().ir.transform.module_pass(opt_level=0, name=name)


def c_target():
    """TVM's plain-C source target (the kernel generator's output)."""
    return tvm().target.Target("c")


def is_buffer_var(value) -> bool:
    """True for a TIR buffer parameter (0.27: a Var carrying a BufferType)."""
    from tvm.tirx.buffer import is_buffer_var as _is_buffer_var

    return _is_buffer_var(value)


def tir_codegen_build(mod, target):
    """Run TVM's target code generator on a lowered TIR module (no packed API wrapping)."""
    import importlib

    return importlib.import_module("tvm.tirx.build").codegen_build(mod, target)


def tir_ir_builder():
    """(IRBuilder, T): TVMScript's imperative TIR builder (`T` is the tirx namespace)."""
    from tvm.script.ir_builder import IRBuilder
    from tvm.script.ir_builder import tirx as T

    return IRBuilder, T


# --- MetaSchedule and RPC (tvm_mpq.tune) -------------------------------------------------

def meta_schedule():
    """TVM MetaSchedule (`tvm.s_tir.meta_schedule`, the 0.27 name)."""
    import tvm.s_tir.meta_schedule as ms

    return ms


def derived_object(cls):
    """Decorator that makes a Python subclass of a MetaSchedule Py* class a TVM object."""
    from tvm.ir.utils import derived_object as _derived

    return _derived(cls)


def schedule_class():
    """The schedulable-TIR Schedule class (`tvm.s_tir.Schedule`)."""
    from tvm.s_tir import Schedule

    return Schedule


def rpc():
    """TVM's RPC package (tracker, server, client: `tvm.rpc`)."""
    import tvm.rpc

    return tvm.rpc


def rpc_tracker():
    """TVM's RPC tracker module (`tvm.rpc.tracker`: `Tracker`; not imported by `tvm.rpc`)."""
    import tvm.rpc.tracker

    return tvm.rpc.tracker


def register_global_func(name: str, func) -> None:
    """Register `func` as a TVM global function (visible to RPC clients of this process)."""
    tvm().register_global_func(name, func, override=True)


def get_global_func(name: str):
    return tvm().get_global_func(name)


def target_c():
    return tvm().target.Target("c")
