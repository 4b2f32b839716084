"""Fidelity of the integer model to the fake-quant QDQ model it came from.

Per layer: every integer op is fed the QDQ model's own quantized input tensor (as an
independent evaluator computes it: onnx.reference or onnxruntime) and its output is
compared with the QDQ model's quantized output tensor, so errors do not compound.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from .. import tvm_adapter as ta
from .. import ops


@dataclass
class LayerFidelity:
    name: str
    n: int                 # elements compared
    within_1: int          # |integer - qdq| <= 1 LSB
    max_abs: int

    @property
    def fraction_within_1(self) -> float:
        return self.within_1 / max(1, self.n)


def qdq_tensors(model: onnx.ModelProto, x: np.ndarray, names: list[str],
                engine: str = "onnx.reference") -> dict[str, np.ndarray]:
    """Evaluate the QDQ model on float input x; return the named intermediate tensors."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    existing = {o.name for o in m.graph.output}
    for name in names:
        if name not in existing:
            m.graph.output.append(onnx.helper.make_tensor_value_info(name, 0, None))
    feed = {m.graph.input[0].name: x}
    if engine == "onnxruntime":
        import onnxruntime as ort

        outs = ort.InferenceSession(m.SerializeToString()).run(names, feed)
    else:
        from onnx.reference import ReferenceEvaluator

        outs = ReferenceEvaluator(m).run(names, feed)
    return {n: np.asarray(o) for n, o in zip(names, outs)}


def _nhwc(a: np.ndarray) -> np.ndarray:
    return np.transpose(a, (0, 2, 3, 1)) if a.ndim == 4 else a


def run_single_op(call, inputs: list[np.ndarray]) -> np.ndarray:
    """Run one integer op of a converted module with the golden model; `inputs` are its
    activation operands in order (the constants come from the call)."""
    a = {k: call.attrs[k] for k in call.attrs.keys()}
    feed = iter(inputs)
    args = [ta.constant_numpy(v) if ta.is_constant(v) else next(feed) for v in call.args]
    return ops.for_mpq_op(call.op.name).golden(call.op.name, args, a)


def per_layer_fidelity(qdq_model: onnx.ModelProto, mod, x: np.ndarray,
                       engine: str = "onnx.reference") -> list[LayerFidelity]:
    """Compare every integer op with the QDQ model on one float input x (NCHW, batch 1)."""
    q_out = {n.name: n.output[0] for n in qdq_model.graph.node if n.op_type == "QuantizeLinear"}
    calls = [c for _, c in ta.function_bindings(mod["main"])
             if ta.is_call(c) and c.op.name.startswith("mpq.")]
    wanted = set()
    for c in calls:
        for k in ("in_node", "in_node_b", "out_node"):
            if k in c.attrs.keys():
                wanted.add(q_out[str(c.attrs[k])])
    t = qdq_tensors(qdq_model, x, sorted(wanted), engine)
    result = []
    for c in calls:
        ins = [_nhwc(t[q_out[str(c.attrs[k])]]) for k in ("in_node", "in_node_b")
               if k in c.attrs.keys()]
        got = run_single_op(c, ins).astype(np.int64)
        want = _nhwc(t[q_out[str(c.attrs["out_node"])]]).astype(np.int64).reshape(got.shape)
        d = np.abs(got - want)
        result.append(LayerFidelity(str(c.attrs["name"]), d.size, int(np.sum(d <= 1)),
                                    int(d.max(initial=0))))
    return result
