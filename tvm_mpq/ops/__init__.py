"""The operator registry: one module per operator family, each declaring all of its faces.

    conv2d.py    Conv: full, pointwise (1x1), depthwise, grouped    mpq.conv2d_icn
                 (conv2d_geometry.py: its ONNX geometry and the Pad fold)
    linear.py    Gemm / MatMul on a flat vector                    mpq.linear_icn
    avg_pool.py  GlobalAveragePool, AveragePool                    mpq.avg_pool_icn
    max_pool.py  MaxPool                                           mpq.max_pool
    add.py       residual Add                                      mpq.add_icn
    activation.py  HardSwish, HardSigmoid, Sigmoid, Tanh, LeakyRelu  mpq.activation_lut
    mul.py       Mul of two activations (per-channel broadcast)    mpq.mul_icn
    softmax.py   Softmax of the (1, N) output                      mpq.softmax
    concat.py    Concat on the channel axis                        mpq.concat

Stages look operators up here, by what they hold: an ONNX op type (`for_onnx`), a layer
kind (`for_kind`), an integer Relax op (`for_mpq_op`), a float Relax op to legalize
(`for_relax`) or a kernel kind (`for_kernel`). Adding an operator is adding one module and
its name to `_MODULES` (docs/operators.md).
"""

from __future__ import annotations

import importlib

from .base import MissingFace, Operator

_MODULES = ("conv2d", "linear", "avg_pool", "max_pool", "add", "activation", "mul", "softmax", "concat")
_OPS: list[Operator] = []
_LOADED: list[bool] = []
_BY: dict[str, dict[str, Operator]] = {"onnx": {}, "kind": {}, "mpq": {}, "relax": {},
                                        "kernel": {}}


def register(cls):
    """Class decorator: instantiate the operator and index its faces."""
    op = cls()
    for table, keys in (("onnx", op.onnx_types), ("kind", op.kinds), ("mpq", op.mpq_ops),
                        ("relax", op.relax_patterns), ("kernel", op.kernel_kinds)):
        for k in keys:
            if k in _BY[table]:
                raise ValueError(f"{table} key {k!r} registered by both "
                                 f"'{_BY[table][k].name}' and '{op.name}'")
            _BY[table][k] = op
    _OPS.append(op)
    return cls


def _lookup(table: str, key: str) -> Operator | None:
    if not _LOADED:
        _LOADED.append(True)
        for m in _MODULES:
            importlib.import_module(f"{__name__}.{m}")
    return _BY[table].get(key)


def all_ops() -> list[Operator]:
    _lookup("kind", "")
    return list(_OPS)


def for_onnx(op_type: str) -> Operator | None:
    return _lookup("onnx", op_type)


def for_kind(kind: str) -> Operator:
    op = _lookup("kind", kind)
    if op is None:
        raise MissingFace(f"no operator owns the layer kind '{kind}'")
    return op


def for_mpq_op(name: str) -> Operator:
    op = _lookup("mpq", name)
    if op is None:
        raise MissingFace(f"no operator owns the integer op '{name}'")
    return op


def for_relax(name: str) -> Operator | None:
    return _lookup("relax", name)


def for_kernel(kind: str) -> Operator:
    op = _lookup("kernel", kind)
    if op is None:
        raise MissingFace(f"no operator owns the kernel kind '{kind}'")
    return op


def weight_kinds() -> tuple[str, ...]:
    """Layer kinds with weights (the plan's layers), in registry order."""
    return tuple(k for op in all_ops() if op.has_weights for k in op.kinds)


def letters() -> dict[str, str]:
    """Plan code letter per weight-layer kind (`C848 D448 ...`)."""
    return {k: v for op in all_ops() for k, v in op.letters.items()}


def mpq_ops() -> dict:
    """Every integer Relax op: name -> (n_inputs, infer, legalize)."""
    return {k: v for op in all_ops() for k, v in op.mpq_ops.items()}


__all__ = ["MissingFace", "Operator", "register", "all_ops", "for_onnx", "for_kind",
           "for_mpq_op", "for_relax", "for_kernel", "weight_kinds", "letters", "mpq_ops"]
