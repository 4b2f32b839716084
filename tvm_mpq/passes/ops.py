"""The project's integer Relax operators: registered from the operator modules.

Each operator module (tvm_mpq/ops/) declares its integer ops with their type inference and
legalization to TE (`Operator.mpq_ops`): mpq.conv2d_icn, mpq.linear_icn, mpq.avg_pool_icn,
mpq.max_pool, mpq.add_icn. This module adds the one op that is not an operator's:

    mpq.precision(x)                             identity that carries a tensor's bit width

Tensors hold unpacked integers (uint8 or int8 containers); the bit widths live in the
attributes (`in_bits`, `out_bits`, `w_bits`) and packing is the code generator's job.
Scalar parameters are call attributes; per-channel arrays are constant arguments.
"""

from __future__ import annotations

from .. import ops
from .. import tvm_adapter as ta


def _legalize_precision(bb, call):
    return call.args[0]


def _infer_precision(call, *_):
    return call.args[0].ty


_OWN = {"mpq.precision": (1, _infer_precision, _legalize_precision)}


def all_ops() -> dict:
    """Every integer Relax op: name -> (n_inputs, infer, legalize)."""
    return {**ops.mpq_ops(), **_OWN}


def get_op(name: str):
    n, infer, legalize = all_ops()[name]
    return ta.register_relax_op(name, n, infer, legalize, doc=__doc__ or "")


def make_call(name: str, args, attrs: dict):
    """A call to one of our ops, with all attribute values as Python ints/bools/strs."""
    relax = ta.relax()
    return relax.Call(get_op(name), list(args), attrs=dict(attrs))
