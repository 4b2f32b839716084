"""`tvm-mpq inspect` and the user errors every verb shares (exit 2, one line)."""

import json

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from conftest import assert_user_error, run_cli
from tvm_mpq.models.zoo import zoo_model


def _save(model, path):
    path.write_bytes(model.SerializeToString())
    return path


def _tiny(op_nodes, inits, in_shape=(1, 3, 8, 8), out_shape=None, out="y"):
    g = helper.make_graph(op_nodes, "tiny",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)],
                          inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])


def test_inspect_zoo_json(tmp_path):
    p = run_cli("inspect", "mobilenet_v1_0.5_224", "--json", tmp_path / "l.json")
    assert p.returncode == 0, p.stderr
    assert "block13.pw" in p.stdout and "total:" in p.stdout
    d = json.loads((tmp_path / "l.json").read_text())
    assert {"layers", "total_params", "total_macs"} <= set(d)
    assert len(d["layers"]) == 29 and d["layers"][0]["kind"] == "conv"
    assert d["total_macs"] == sum(layer["macs"] for layer in d["layers"])


def test_inspect_onnx_file(tmp_path):
    f = _save(zoo_model("mobilenet_v1_0.25_32"), tmp_path / "m.onnx")
    p = run_cli("inspect", f)
    assert p.returncode == 0, p.stderr
    assert "1x32x32" in p.stdout


def test_missing_file(tmp_path):
    assert_user_error(run_cli("inspect", tmp_path / "nope.onnx"), "not found")


def test_not_onnx(tmp_path):
    f = tmp_path / "x.onnx"
    f.write_text("this is a text file, not a protobuf\n" * 10)
    assert_user_error(run_cli("inspect", f), "not a valid ONNX")


def test_truncated(tmp_path):
    data = zoo_model("mobilenet_v1_0.25_32").SerializeToString()
    f = tmp_path / "t.onnx"
    f.write_bytes(data[: len(data) // 2])
    assert_user_error(run_cli("inspect", f), "t.onnx")


def test_empty_file(tmp_path):
    f = tmp_path / "e.onnx"
    f.write_bytes(b"")
    assert_user_error(run_cli("inspect", f), "empty")


def test_dynamic_input(tmp_path):
    m = zoo_model("mobilenet_v1_0.25_32")
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    assert_user_error(run_cli("inspect", _save(m, tmp_path / "d.onnx")), "dynamic", "input")


def test_unsupported_op_names_node(tmp_path):
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="my_conv", pads=[1, 1, 1, 1]),
             helper.make_node("Elu", ["c"], ["y"], name="odd_act")]
    f = _save(_tiny(nodes, [w], out_shape=[1, 4, 8, 8]), tmp_path / "u.onnx")
    assert_user_error(run_cli("inspect", f), "Elu", "odd_act")


def test_unsupported_attribute_names_node(tmp_path):
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="dil", dilations=[2, 2])]
    f = _save(_tiny(nodes, [w], out_shape=[1, 4, 4, 4]), tmp_path / "dil.onnx")
    assert_user_error(run_cli("inspect", f), "dil", "dilations")
    # asymmetric pads compile now (tests/test_op_conv2d_general.py); a reflect Pad does not
    pads = numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64), "pads")
    nodes = [helper.make_node("Pad", ["x", "pads"], ["xp"], name="mirror", mode="reflect"),
             helper.make_node("Conv", ["xp", "w"], ["y"], name="conv")]
    f = _save(_tiny(nodes, [w, pads], out_shape=[1, 4, 7, 7]), tmp_path / "mirror.onnx")
    assert_user_error(run_cli("inspect", f), "mirror", "reflect")


def test_nan_weights(tmp_path):
    w = np.ones((4, 3, 3, 3), np.float32)
    w[0, 0, 0, 0] = np.nan
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="nanconv", pads=[1, 1, 1, 1])]
    f = _save(_tiny(nodes, [numpy_helper.from_array(w, "w")], out_shape=[1, 4, 8, 8]),
              tmp_path / "n.onnx")
    assert_user_error(run_cli("inspect", f), "nanconv", "NaN")


def test_bad_zoo_name():
    assert_user_error(run_cli("inspect", "mobilenet_v1_0.3_224"), "width")
    assert_user_error(run_cli("inspect", "resnet50"), "zoo")


def test_help_has_examples():
    p = run_cli("inspect", "--help")
    assert p.returncode == 0 and "examples:" in p.stdout


def test_every_verb_has_help_with_examples():
    from tvm_mpq.cli import VERBS

    for verb in VERBS:
        p = run_cli(verb, "--help")
        assert p.returncode == 0 and "examples:" in p.stdout, verb


def test_unknown_verb_is_a_usage_error():
    p = run_cli("frobnicate")
    assert p.returncode == 2 and "Traceback" not in p.stderr


def test_version_and_verbosity_after_the_verb():
    from tvm_mpq import __version__

    p = run_cli("--version")
    assert p.returncode == 0 and p.stdout.strip() == f"tvm-mpq {__version__}"
    for args in (("-q", "plan", "mobilenet_v1_0.25_28"), ("plan", "mobilenet_v1_0.25_28", "-q")):
        p = run_cli(*args, "--flash", "100kB", "--ram", "12kB")
        assert p.returncode == 0, p.stderr
    p = run_cli("inspect", "mobilenet_v1_0.25_28", "-v")
    assert p.returncode == 0 and "layer" in p.stdout, p.stderr
