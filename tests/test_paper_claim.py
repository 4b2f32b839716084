"""bench/paper_claim.py's own pieces (seconds): which 28-px models fit the budget, and
the batched QDQ evaluation (PyTorch Conv) against plain onnx.reference."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

ROOT = Path(__file__).resolve().parents[1]
QAT = ROOT / "models/fashion_mnist/mobilenet_v1_0.25_28.mixpc_100kB_12kB.qat.onnx"


@pytest.fixture(scope="module")
def claim():
    spec = importlib.util.spec_from_file_location("paper_claim", ROOT / "bench/paper_claim.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod        # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_budget_separates_the_models(claim):
    fits = {n: claim.fit(n, 512_000, 64_000) for n in claim.ZOO_28}
    small, large = fits["mobilenet_v1_0.25_28"], fits["mobilenet_v1_0.5_28"]
    assert (small.ro_8bit, small.rw_8bit) == (237_700, 18_816) and small.fits_8bit
    assert all(e["w_bits"] == e["out_bits"] == 8 for e in small.plan["layers"])
    assert not large.fits_8bit and large.plan is not None
    assert large.plan["ro_bytes"] <= 512_000 and large.plan["rw_bytes"] <= 64_000
    w, a = claim.bit_counts(large.plan)
    assert w[8] + w[4] + w[2] == 28 and w[2] < w[4] and a == {8: 27, 4: 0, 2: 0}
    for n in ("mobilenet_v1_0.75_28", "mobilenet_v1_1.0_28"):
        assert not fits[n].fits_8bit and fits[n].plan is None
        assert "FLASH budget" in fits[n].why_not
    rows = claim.fit_rows(list(fits.values()))
    assert rows[0][-1] == "yes, all 8-bit" and rows[2][-1].startswith("no: FLASH budget")


def test_batched_qdq_accuracy_equals_onnx_reference(claim):
    from onnx.reference import ReferenceEvaluator

    model = onnx.load(QAT)
    x, labels = claim.test_inputs(model, 40)
    ev = ReferenceEvaluator(model)
    one = np.concatenate([ev.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])
    fast = ReferenceEvaluator(claim.batched(model), new_ops=[claim._torch_conv_op()])
    many = fast.run(None, {"input": x})[0]
    assert many.shape == (40, 10)
    # the logits are INT8 steps; the float Conv may differ in summation order only
    step = float(onnx.numpy_helper.to_array(
        next(t for t in model.graph.initializer if t.name == "fc.out_scale")))
    assert np.abs(many - one).max() <= step + 1e-6
    assert np.mean(many.argmax(1) == one.argmax(1)) >= 0.95
    acc = claim.qdq_accuracy(model, x, labels, batch=16)
    assert acc == pytest.approx(np.mean(many.argmax(1) == labels))
