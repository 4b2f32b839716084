"""The imported Relax module of a zoo model runs on the host and agrees with onnxruntime."""

import numpy as np
import onnxruntime as ort

from tvm_mpq import tvm_adapter as ta
from tvm_mpq.models.zoo import zoo_model


def test_relax_matches_onnxruntime():
    m = zoo_model("mobilenet_v1_0.25_128")
    run = ta.build_relax_host(ta.onnx_to_relax(m))
    rng = np.random.default_rng(1)
    sess = ort.InferenceSession(m.SerializeToString())
    for _ in range(2):
        x = rng.uniform(-1, 1, (1, 3, 128, 128)).astype(np.float32)
        ref = sess.run(None, {"input": x})[0]
        got = np.asarray(run(x))
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
        assert got.argmax() == ref.argmax()
