"""Bad plans given to `quantize` and `train` (--plan): malformed JSON, another model's plan,
bit widths outside {2, 4, 8}, a layer missing or renamed. One line, exit 2, no output and no
checkpoint written. (The plan contract itself is tested in test_plan.py.)"""

import json

import pytest

from conftest import assert_user_error, run_cli
from tvm_mpq.frontend.graph import build_layer_graph
from tvm_mpq.frontend.loader import validate
from tvm_mpq.memory.allocation import allocate
from tvm_mpq.models.zoo import zoo_model

MODEL = "mobilenet_v1_0.25_32"


def _plan(name=MODEL):
    return allocate(build_layer_graph(validate(zoo_model(name))), 120_000, 10_000).to_json()


def _edit(fn):
    def make():
        d = _plan()
        fn(d)
        return json.dumps(d)
    return make


def _layer(i, **kw):
    return _edit(lambda d: d["layers"][i].update(kw))


CASES = {
    "truncated_json": (lambda: json.dumps(_plan())[:200], ["not valid JSON"]),
    "empty_file": (lambda: "", ["not valid JSON"]),
    "not_utf8": (lambda: b"\xff\xfe\x00{", ["cannot read plan file"]),
    "a_list": (lambda: "[1, 2]", ["expected a JSON object"]),
    "other_model": (lambda: json.dumps(allocate(build_layer_graph(validate(
        zoo_model("mobilenet_v1_0.5_32"))), 10**7, 10**7).to_json()), ["mobilenet_v1_0.5_32"]),
    "w_bits_3": (_layer(2, w_bits=3), ["block1.pw", "w_bits = 3", "8, 4, 2"]),
    "w_bits_16": (_layer(2, w_bits=16), ["block1.pw", "w_bits = 16"]),
    "out_bits_1": (_layer(4, out_bits=1), ["block2.pw", "out_bits = 1"]),
    "in_bits_0": (_layer(0, in_bits=0), ["in_bits"]),
    "bits_as_string": (_layer(2, w_bits="8"), ["'w_bits' must be int"]),
    "renamed_layer": (_layer(3, name="nope"), ["plan layer"]),
    "dropped_layer": (_edit(lambda d: d["layers"].pop(5)), ["plan layer"]),
    "missing_key": (_edit(lambda d: d.pop("layers")), ["missing key 'layers'"]),
}


# train reads the plan the same way (quant.workflow.load_net_and_plan): a few cases suffice
TRAIN_CASES = ["truncated_json", "other_model", "w_bits_3", "renamed_layer"]


@pytest.mark.parametrize("verb,case", [("quantize", c) for c in sorted(CASES)] +
                         [("train", c) for c in TRAIN_CASES])
def test_bad_plan(tmp_path, verb, case):
    make, needles = CASES[case]
    text = make()
    plan = tmp_path / "plan.json"
    if isinstance(text, bytes):
        plan.write_bytes(text)
    else:
        plan.write_text(text)
    out = tmp_path / "q.onnx"
    extra = (["--calib", "synthetic", "--num-samples", 4] if verb == "quantize"
             else ["--epochs", 1, "--float-epochs", 0, "--limit-train", 64])
    assert_user_error(run_cli(verb, MODEL, "--plan", plan, *extra, "-o", out), *needles)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]   # nothing written


@pytest.mark.parametrize("verb", ["quantize", "train"])
def test_plan_path_is_a_directory_or_missing(tmp_path, verb):
    out = tmp_path / "q.onnx"
    assert_user_error(run_cli(verb, MODEL, "--plan", tmp_path, "-o", out), "plan file")
    assert_user_error(run_cli(verb, MODEL, "--plan", tmp_path / "none.json", "-o", out),
                      "not found")
    assert not out.exists()
