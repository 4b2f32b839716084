"""AnnotatePrecision: give every quantized tensor of a fake-quant Relax module its bit width
and signedness.

Must run after: `frontend.qdq.prepare_qdq` and TVM's ONNX import of the prepared model
(sub-byte tensors then live in 8-bit containers and their widths in `QdqInfo`).

What it does: wraps every `R.quantize(...)` and every `R.dequantize(<constant>, ...)` in
`mpq.precision(...)`, an identity op whose attributes are `bits`, `signed` and `node` (the
ONNX node it came from). Weights are matched to `QdqInfo.const_dequantize` by shape and
values, activations to `QdqInfo.quantize` by shape, scale and zero point (in order among
equal keys). Invariant: the module computes exactly what it computed before.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from .. import tvm_adapter as ta
from ..errors import ModelError
from ..frontend.qdq import QdqInfo
from .ops import make_call


def _weight_key(arr: np.ndarray) -> tuple:
    return (tuple(arr.shape), np.ascontiguousarray(arr).astype(np.int64).tobytes())


def annotate_precision(mod, info: QdqInfo, const_arrays: dict[str, np.ndarray]):
    """`const_arrays`: initializer name -> container array of each `info.const_dequantize`."""
    relax = ta.relax()
    weights = {}
    for spec in info.const_dequantize:
        weights.setdefault(_weight_key(const_arrays[spec.tensor]), spec)
    acts = defaultdict(list)
    for spec in info.quantize:
        acts[tuple(spec.shape)].append(spec)
    used = set()

    errors: list[ModelError] = []     # TVM's FFI turns exceptions raised in the visitor into
                                      # RuntimeError; the ModelError is re-raised below

    @relax.expr_functor.mutator
    class _Annotate(relax.PyExprMutator):
        def visit_call_(self, call):
            try:
                return self._visit_call(call)
            except ModelError as e:
                errors.append(e)
                raise

        def _visit_call(self, call):
            call = self.visit_expr_post_order(call)
            if ta.is_call(call, "relax.quantize"):
                spec = self._activation(call)
            elif ta.is_call(call, "relax.dequantize") and ta.is_constant(call.args[0]):
                spec = weights.get(_weight_key(ta.constant_numpy(call.args[0])))
                if spec is None:
                    raise ModelError("a dequantized constant does not match any ONNX initializer")
            else:
                return call
            attrs = {"bits": spec.bits, "signed": int(spec.signed), "node": spec.node}
            if spec.clip_hi is not None:
                attrs["clip_hi"] = str(spec.clip_hi)     # exact repr; DictAttrs floats are f32
            return make_call("mpq.precision", [call], attrs)

        def _activation(self, call):
            shape = ta.static_shape(call)
            cands = [s for s in acts.get(shape, []) if s.node not in used]
            for s in cands:
                if s.signed == call.attrs.out_dtype.startswith("int"):
                    used.add(s.node)
                    return s
            raise ModelError(f"cannot match a QuantizeLinear of shape {shape} to the ONNX model")

    mutator = _Annotate(mod)
    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            try:
                new = mutator.visit_expr(func)
            except Exception:
                if errors:
                    raise errors[0] from None
                raise
            mutator.builder_.update_func(gv, new)
    return mutator.builder_.get()
