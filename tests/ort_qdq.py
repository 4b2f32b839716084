"""Helpers of the operator tests: float models quantized by onnxruntime's quantize_static
(QDQ, uint8 activations, int8 per-channel weights), and the golden model of our converted
model against onnxruntime on random inputs."""

from __future__ import annotations

import numpy as np
import onnx


def ort_quantize(f_path, q_path, input_shape, n: int = 16, seed: int = 1, **kw):
    """quantize_static of the float model at `f_path` into `q_path` (QDQ)."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(seed)
            self.it = iter([{"input": rng.uniform(-1, 1, input_shape).astype(np.float32)}
                            for _ in range(n)])

        def get_next(self):
            return next(self.it, None)

    opts = dict(quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    opts.update(kw)
    quantize_static(str(f_path), str(q_path), Reader(), **opts)
    return q_path


def golden_vs_onnxruntime(q_path, input_shape, n: int = 8, seed: int = 5):
    """(golden outputs, onnxruntime outputs, output scale) over `n` random inputs, both
    dequantized."""
    import onnxruntime as ort

    from tvm_mpq.passes.pipeline import convert
    from tvm_mpq.reference.interpret import run_reference

    im = convert(onnx.load(q_path))
    sess = ort.InferenceSession(str(q_path))
    rng = np.random.default_rng(seed)
    got, want = [], []
    for _ in range(n):
        x = rng.uniform(-1, 1, input_shape).astype(np.float32)
        want.append(sess.run(None, {"input": x})[0])
        got.append(im.dequantize_output(run_reference(im.mod, im.quantize_input(x))))
    return np.array(got), np.array(want), im.output_scale, im


def kinds_of(mod) -> list[str]:
    """The `kind` attribute of every integer op of a converted module, in order."""
    from tvm_mpq import tvm_adapter as ta

    return [str(c.attrs["kind"]) for _, c in ta.function_bindings(mod["main"])
            if ta.is_call(c) and c.op.name.startswith("mpq.") and "kind" in c.attrs]
