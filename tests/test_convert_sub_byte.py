"""Our own QDQ export with real 8/4/2-bit mixes (MixPL with ICN and folded layers, MixPC)
through the conversion: per-layer fidelity to onnx.reference on the QDQ model (an
independent evaluator, it also runs INT2/UINT2), and TVM host build == golden model."""

import numpy as np
import onnx
import pytest

from conftest import run_cli
from tvm_mpq import tvm_adapter as ta
from tvm_mpq.data.fashion_mnist import load_fashion_mnist, to_model_input
from tvm_mpq.passes.pipeline import convert
from tvm_mpq.reference.fidelity import per_layer_fidelity
from tvm_mpq.reference.interpret import run_reference

MODEL = "mobilenet_v1_0.25_32"


@pytest.fixture(scope="module", params=["mixpc", "mixpl"])
def qmodel(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(request.param)
    p = run_cli("plan", MODEL, "--flash", "120kB", "--ram", "10kB", "--scheme", request.param,
                "--json", d / "plan.json")
    assert p.returncode == 0, p.stderr
    q = run_cli("quantize", MODEL, "--plan", d / "plan.json", "--calib", "fashion-mnist",
                "--num-samples", "128", "--limit-test", "64", "-o", d / "q.onnx")
    assert q.returncode == 0, q.stderr
    return onnx.load(d / "q.onnx")


@pytest.fixture(scope="module")
def images():
    x, _ = load_fashion_mnist("test")
    return to_model_input(x[:6], 32, 1).astype(np.float32)


def test_sub_byte_layers_present(qmodel):
    im = convert(qmodel)
    calls = [c for _, c in ta.function_bindings(im.mod["main"]) if ta.is_call(c)
             and c.op.name.startswith("mpq.")]
    w_bits = {int(c.attrs["w_bits"]) for c in calls if "w_bits" in c.attrs.keys()}
    out_bits = {int(c.attrs["out_bits"]) for c in calls}
    assert {8, 4, 2} <= w_bits and {8, 4, 2} <= out_bits


def test_per_layer_fidelity_to_onnx_reference(qmodel, images):
    im = convert(qmodel)
    n = within = exact_layers = 0
    for x in images[:3]:
        for f in per_layer_fidelity(qmodel, im.mod, x[None]):
            n += f.n
            within += f.within_1
            exact_layers += int(f.max_abs == 0)
    assert within / n >= 0.99


def test_host_build_equals_golden(qmodel, images):
    im = convert(qmodel)
    run = ta.build_relax_host(im.mod)
    for x in images:
        xi = im.quantize_input(x[None])
        np.testing.assert_array_equal(np.asarray(run(xi)), run_reference(im.mod, xi))


def test_run_cli_reference(qmodel, tmp_path):
    f = tmp_path / "q.onnx"
    onnx.save(qmodel, f)
    p = run_cli("run", f, "--board", "host", "--input", "random", "--reference",
                "--output", tmp_path / "y.npy")
    assert p.returncode == 0, p.stderr
    assert "bit-identical" in p.stdout
    assert np.load(tmp_path / "y.npy").shape == (1, 10)
