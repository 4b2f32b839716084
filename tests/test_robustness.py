"""User errors across the flow end in one line and exit code 2, naming what is wrong;
outputs are atomic."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import assert_user_error, run_cli
from tvm_mpq.errors import ModelError
from tvm_mpq.passes.pipeline import convert


@pytest.fixture(scope="module")
def qdq(tmp_path_factory):
    d = tmp_path_factory.mktemp("q")
    assert run_cli("plan", "mobilenet_v1_0.25_32", "--flash", "2MB", "--ram", "512kB",
                   "--json", d / "p.json").returncode == 0
    p = run_cli("quantize", "mobilenet_v1_0.25_32", "--plan", d / "p.json", "--calib",
                "synthetic", "--num-samples", "8", "-o", d / "q.onnx")
    assert p.returncode == 0, p.stderr
    return onnx.load(d / "q.onnx")


def _set_init(model, name, arr):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for i, t in enumerate(m.graph.initializer):
        if t.name == name:
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(arr.astype(
                numpy_helper.to_array(t).dtype), name))
            return m
    raise KeyError(name)


def _first_act_quant(model):
    return next(n for n in model.graph.node if n.op_type == "QuantizeLinear"
                and n.input[0] != model.graph.input[0].name)


@pytest.mark.parametrize("bad", [0.0, -0.5, np.inf])
def test_bad_scale_names_node(qdq, tmp_path, bad):
    q = _first_act_quant(qdq)
    m = _set_init(qdq, q.input[1], np.array(bad, np.float32))
    with pytest.raises(ModelError, match=q.name):
        convert(m)
    f = tmp_path / "bad.onnx"
    onnx.save(m, f)
    assert_user_error(run_cli("run", f, "--input", "random"), q.name)


def test_mismatched_zero_point_type_names_node(qdq):
    inits = {t.name for t in qdq.graph.initializer}
    dq = next(n for n in qdq.graph.node if n.op_type == "DequantizeLinear"
              and n.input[0] in inits and len(n.input) > 2)
    m = onnx.ModelProto()
    m.CopyFrom(qdq)
    t = next(t for t in m.graph.initializer if t.name == dq.input[2])
    shape = list(t.dims)
    t.CopyFrom(onnx.helper.make_tensor(dq.input[2], onnx.TensorProto.UINT4, shape,
                                       [3] * int(np.prod(shape or [1]))))
    with pytest.raises(ModelError, match=dq.name):
        convert(m)


def test_compile_is_atomic(tmp_path, monkeypatch):
    from tvm_mpq.codegen import aot

    out = tmp_path / "out"

    def boom(self, d):
        (d / "partial.c").parent.mkdir(parents=True, exist_ok=True)
        (d / "partial.c").write_text("half")
        raise RuntimeError("simulated crash while writing")

    monkeypatch.setattr(aot.GeneratedModel, "write", boom)
    from tvm_mpq.cli import main

    with pytest.raises(RuntimeError):
        main(["compile", "mobilenet_v1_0.25_32", "--flash", "2MB", "--ram", "512kB",
              "--num-samples", "4", "--no-build", "-o", str(out)])
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_float_model_without_budget(tmp_path):
    assert_user_error(run_cli("compile", "mobilenet_v1_0.25_32", "-o", tmp_path / "o"),
                      "float model", "budget")
    assert not (tmp_path / "o").exists()


def test_impossible_budget_compile(tmp_path):
    assert_user_error(run_cli("compile", "mobilenet_v1_0.25_32", "--flash", "10kB", "--ram",
                              "1kB", "-o", tmp_path / "o"), "cannot be met")
    assert not (tmp_path / "o").exists()


def test_accumulator_overflow_is_rejected(qdq):
    # A batch-norm shift of 1e6 makes the int32 bias (and accumulator) overflow: the
    # converter must refuse the layer by name instead of wrapping silently.
    beta = next(t.name for t in qdq.graph.initializer if t.name.endswith(".bn.beta"))
    arr = numpy_helper.to_array(next(t for t in qdq.graph.initializer if t.name == beta))
    m = _set_init(qdq, beta, np.full(arr.shape, 1e6, np.float32))
    with pytest.raises(ModelError, match="overflow"):
        convert(m)


def _tree(d, skip=()):
    return {str(f.relative_to(d)): f.read_bytes() for f in sorted(d.rglob("*"))
            if f.is_file() and f.relative_to(d).parts[0] not in skip}


def test_same_model_same_firmware_bytes(qdq, tmp_path):
    """compile twice, into other directories and under other hash seeds: the same C
    sources, metadata and project files, and the same firmware image."""
    from tvm_mpq.target.build import firmware_path

    f = tmp_path / "q.onnx"
    onnx.save(qdq, f)
    images, trees = [], []
    for seed, name in (("1", "a"), ("2", "b")):
        p = run_cli("compile", f, "--board", "qemu_m7", "-o", tmp_path / name,
                    env={"PYTHONHASHSEED": seed})
        assert p.returncode == 0, p.stderr
        images.append(firmware_path("qemu_m7", tmp_path / name / "build/qemu_m7").read_bytes())
        trees.append(_tree(tmp_path / name, skip=("build",)))
    assert images[0] == images[1]
    assert any(k.startswith("codegen/") and k.endswith(".c") for k in trees[0])
    assert trees[0] == trees[1]


def test_same_command_same_plan_and_onnx(tmp_path):
    """plan and quantize twice (other directories, other hash seeds): the same bytes.
    (train: tests/test_atomic_outputs.py, an interrupted and resumed run gives the bytes of
    an uninterrupted one.)"""
    outs = []
    for seed in ("1", "2"):
        d = tmp_path / seed
        env = {"PYTHONHASHSEED": seed}
        p = run_cli("plan", "mobilenet_v1_0.25_32", "--flash", "120kB", "--ram", "10kB",
                    "--json", d / "p.json", env=env)
        assert p.returncode == 0, p.stderr
        p = run_cli("quantize", "mobilenet_v1_0.25_32", "--plan", d / "p.json", "--calib",
                    "synthetic", "--num-samples", 16, "--limit-test", 16, "-o", d / "q.onnx",
                    env=env)
        assert p.returncode == 0, p.stderr
        outs.append(((d / "p.json").read_bytes(), (d / "q.onnx").read_bytes()))
    assert outs[0] == outs[1]
