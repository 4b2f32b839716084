"""`tvm-mpq plan`: the memory-driven bit allocation (method notes, section 1), the plan
JSON contract, the liveness RAM model and the CLI."""

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, assert_user_error, run_cli
from onnx import TensorProto, helper, numpy_helper

from tvm_mpq.errors import BudgetError, MpqError, PlanError
from tvm_mpq.frontend.graph import build_layer_graph
from tvm_mpq.frontend.loader import load_model, validate
from tvm_mpq.memory.allocation import allocate, footprint_8bit
from tvm_mpq.memory.liveness import (
    live_tensors,
    peak_activation_bytes,
    scratch_bytes,
    step_bytes,
    tensor_bits,
    tensor_sources,
    uniform_bits,
)
from tvm_mpq.memory.plan import SCHEMA, load_plan, packed_bytes, param_bytes, plan_from_json
from tvm_mpq.units import parse_size

FLASH, RAM = 2_048_000, 512_000
TOP_KEYS = ["schema", "model", "scheme", "ram_model", "flash_bytes", "ram_bytes", "ro_bytes",
            "rw_bytes", "input_bits", "layers"]
LAYER_KEYS = {"name", "kind", "in_bits", "out_bits", "w_bits", "icn", "per_channel",
              "n_weights", "out_channels", "weight_bytes", "param_bytes", "act_bytes"}
TVM_MPQ = ROOT / ".venv" / "bin" / "tvm-mpq"


@cache
def zoo_graph(name):
    return build_layer_graph(validate(load_model(name)))


def plan_cli(*args, tmp=None):
    """Run `.venv/bin/tvm-mpq plan ARGS` (the installed entry point when present)."""
    import os
    import subprocess

    if TVM_MPQ.exists():
        env = dict(os.environ, PYTHONHASHSEED="0")
        return subprocess.run([str(TVM_MPQ), "plan", *map(str, args)], check=False,
                              capture_output=True, text=True, cwd=tmp, timeout=120,
                              env=env)
    return run_cli("plan", *args, cwd=tmp)


# ------------------------------------------------------------------------------------------
# The paper's reference allocation.

def test_mobilenet_1_0_224_mixpc_reference_sequence():
    plan = allocate(zoo_graph("mobilenet_v1_1.0_224"), FLASH, RAM, scheme="mixpc")
    codes = plan.bits_string().split()
    assert codes[:8] == ["C848", "D448", "P428", "D288", "P848", "D448", "P448", "D488"]
    assert codes[8:11] == ["P888", "D888", "P888"]
    assert codes[-2:] == ["P882", "F882"]
    rest = codes[8:-2]
    assert "P884" in rest and all(c in ("P888", "D888", "P884") for c in rest)
    assert len(codes) == 28 and codes[0][0] == "C" and codes[-1][0] == "F"
    assert plan.ro_bytes <= FLASH and plan.rw_bytes <= RAM
    assert plan.layers[0].in_bits == 8 and plan.layers[-1].out_bits == 8
    assert plan.ro_bytes == sum(lp.weight_bytes + lp.param_bytes for lp in plan.layers)
    assert plan.rw_bytes == max(lp.act_bytes for lp in plan.layers)


@pytest.mark.parametrize("width", ["0.25", "0.5"])
@pytest.mark.parametrize("res", [128, 160, 192, 224])
def test_small_widths_stay_at_8_bits(width, res):
    g = zoo_graph(f"mobilenet_v1_{width}_{res}")
    plan = allocate(g, FLASH, RAM, scheme="mixpc")
    assert all(lp.w_bits == 8 for lp in plan.layers)      # FLASH never needs a cut
    if (width, res) == ("0.5", 224):
        # Under the method's chain RAM model, block1.pw of 0.5_224 holds 16x112x112 in +
        # 32x112x112 out = 602,112 B at 8 bits > 512,000 B, so its activations must be cut
        # (docs/plan.md discusses this departure from the paper's remark).
        assert footprint_8bit(g)[1] == 602_112
        assert plan.layer("block1.pw").out_bits == 4
        assert not plan.all_8bit
    else:
        assert plan.all_8bit, plan.bits_string()
        assert (plan.ro_bytes, plan.rw_bytes) == footprint_8bit(g)


def test_allocation_is_deterministic():
    a = allocate(zoo_graph("mobilenet_v1_0.75_224"), FLASH, RAM, scheme="mixpl")
    zoo_graph.cache_clear()
    b = allocate(zoo_graph("mobilenet_v1_0.75_224"), FLASH, RAM, scheme="mixpl")
    assert json.dumps(a.to_json()) == json.dumps(b.to_json())


def test_mixpl_folded_vs_icn():
    plan = allocate(zoo_graph("mobilenet_v1_1.0_224"), FLASH, RAM, scheme="mixpl")
    assert not any(lp.per_channel for lp in plan.layers)
    kinds = set()
    for lp in plan.layers:
        folded = lp.w_bits == 8 and lp.out_bits == 8
        assert lp.icn == (not folded), lp
        c = lp.out_channels
        assert lp.param_bytes == (4 * c + 20 if folded else 9 * c + 12)
        kinds.add(folded)
    assert kinds == {True, False}
    pc = allocate(zoo_graph("mobilenet_v1_1.0_224"), FLASH, RAM, scheme="mixpc")
    assert all(lp.icn and lp.per_channel and lp.param_bytes == 10 * lp.out_channels + 8
               for lp in pc.layers)


def test_param_bytes_formulas():
    assert param_bytes("mixpl", 10, 8, 8) == 10 * 4 + 5 * 4
    assert param_bytes("mixpl", 10, 4, 8) == 10 * 9 + 3 * 4
    assert param_bytes("mixpl", 10, 8, 2) == 10 * 9 + 3 * 4
    assert param_bytes("mixpc", 10, 8, 8) == 10 * 10 + 2 * 4
    assert packed_bytes(5, 2) == 2 and packed_bytes(5, 4) == 3 and packed_bytes(5, 8) == 5


def test_mixpl_cut_switches_a_layer_to_icn():
    g = zoo_graph("mobilenet_v1_0.25_128")
    ro8 = footprint_8bit(g, "mixpl")[0]
    plan = allocate(g, ro8 - 1, RAM, scheme="mixpl")
    cut = [lp for lp in plan.layers if lp.w_bits < 8]
    assert cut and all(lp.icn and lp.param_bytes == 9 * lp.out_channels + 12 for lp in cut)
    assert plan.ro_bytes <= ro8 - 1


def test_budget_errors_are_one_line_and_name_the_blocker():
    g = zoo_graph("mobilenet_v1_1.0_224")
    with pytest.raises(BudgetError) as e:
        allocate(g, FLASH, 300_000)
    msg = e.value.one_line()
    assert "301,056 B" in msg and "block1.pw" in msg and "\n" not in msg
    allocate(g, FLASH, 301_056)                     # exactly the minimum is reachable
    with pytest.raises(BudgetError) as e:
        allocate(g, 1_000_000, RAM)
    assert "FLASH budget 1,000,000 B" in str(e.value) and "2 bits" in str(e.value)
    with pytest.raises(BudgetError, match="liveness"):
        allocate(g, FLASH, 300_000, ram_model="liveness")
    with pytest.raises(MpqError):
        allocate(g, FLASH, RAM, scheme="mixpq")


# ------------------------------------------------------------------------------------------
# Liveness model on a graph with a skip connection.

def _skip_model():
    rng = np.random.default_rng(0)

    def init(name, shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["c0"], name="conv0", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("Relu", ["c0"], ["a"], name="relu0"),
        helper.make_node("Conv", ["a", "w1"], ["b"], name="pw1", kernel_shape=[1, 1]),
        helper.make_node("Conv", ["b", "w2"], ["c"], name="dw2", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1], group=16),
        helper.make_node("Add", ["a", "c"], ["d"], name="add3"),
        helper.make_node("GlobalAveragePool", ["d"], ["e"], name="gap"),
        helper.make_node("Flatten", ["e"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1),
    ]
    inits = [init("w0", (16, 3, 3, 3)), init("w1", (16, 16, 1, 1)),
             init("w2", (16, 1, 3, 3)), init("wf", (10, 16)), init("bf", (10,))]
    g = helper.make_graph(nodes, "skipnet",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])


@pytest.fixture(scope="module")
def skip_graph():
    return build_layer_graph(validate(_skip_model(), origin="skipnet"))


def test_liveness_keeps_the_skip_tensor_alive(skip_graph):
    g = skip_graph
    assert [layer.kind for layer in g.layers] == ["conv", "pointwise", "depthwise", "add",
                                                  "pool", "linear"]
    live = live_tensors(g)
    skip = g.layers[0].output
    assert skip in live[1] and skip in live[2] and skip in live[3] and skip not in live[4]
    src = tensor_sources(g)
    assert src[g.layers[3].output] == 2          # add output: the chain predecessor (dw2)
    assert src[g.layers[4].output] == 2          # pool passes its input's precision through
    bits8 = uniform_bits(g)
    n = 16 * 16 * 16
    assert step_bytes(g, bits8)[1] == 2 * n      # a (the skip, also pw1 input), b
    assert step_bytes(g, bits8)[2] == 3 * n      # a (skip), b, c
    chain_rw = footprint_8bit(g, ram_model="chain")[1]
    peak = peak_activation_bytes(g, bits8)
    assert peak > chain_rw
    assert peak_activation_bytes(g, bits8, scratch=True) == max(
        s + scratch_bytes(layer) for s, layer in zip(step_bytes(g, bits8), g.layers))


def test_liveness_allocation_on_skip_graph(skip_graph):
    g = skip_graph
    chain = allocate(g, FLASH, 6 * 1024, ram_model="chain")
    live_peak = peak_activation_bytes(g, tensor_bits(g, chain))
    assert live_peak >= chain.rw_bytes
    assert live_peak > 6 * 1024                  # the chain plan overflows the real arena
    live = allocate(g, FLASH, 6 * 1024, ram_model="liveness")
    assert live.rw_bytes <= 6 * 1024
    assert live.rw_bytes == peak_activation_bytes(g, tensor_bits(g, live), scratch=True)
    assert live.rw_bytes >= max(lp.act_bytes for lp in live.layers)
    assert plan_from_json(live.to_json(), g).to_json() == live.to_json()
    assert live.layers[0].in_bits == 8 and live.layers[-1].out_bits == 8


def test_liveness_on_mobilenet_matches_chain_bits():
    g = zoo_graph("mobilenet_v1_1.0_224")
    chain = allocate(g, FLASH, RAM, ram_model="chain")
    live = allocate(g, FLASH, RAM, ram_model="liveness")
    assert live.bits_string() == chain.bits_string()
    bits = tensor_bits(g, live)
    assert peak_activation_bytes(g, bits) >= chain.rw_bytes
    assert live.rw_bytes == peak_activation_bytes(g, bits, scratch=True) <= RAM
    assert peak_activation_bytes(g, uniform_bits(g)) >= footprint_8bit(g)[1]


# ------------------------------------------------------------------------------------------
# The plan JSON contract.

def test_plan_json_schema_and_roundtrip(tmp_path):
    g = zoo_graph("mobilenet_v1_1.0_224")
    plan = allocate(g, FLASH, RAM)
    d = plan.to_json()
    assert list(d) == TOP_KEYS and d["schema"] == SCHEMA and d["input_bits"] == 8
    assert d["ram_model"] == "chain" and d["scheme"] == "mixpc"
    for lo in d["layers"]:
        assert LAYER_KEYS <= set(lo)
    assert [lo["name"] for lo in d["layers"]] == [layer.name for layer in g.weight_layers]
    path = tmp_path / "p.json"
    path.write_text(json.dumps(d))
    again = load_plan(path, g)
    assert again.to_json() == d
    assert again.layer("fc").bits_code == "F882"
    with pytest.raises(PlanError):
        again.layer("nope")


def _bad(tmp_path, obj, graph=None, text=None):
    path = tmp_path / "bad.json"
    path.write_text(text if text is not None else json.dumps(obj))
    with pytest.raises(PlanError) as e:
        load_plan(path, graph)
    assert "\n" not in e.value.one_line()
    return str(e.value)


def test_load_plan_rejects_malformed(tmp_path):
    g = zoo_graph("mobilenet_v1_0.25_128")
    good = allocate(g, FLASH, RAM).to_json()

    def mut(fn):
        d = json.loads(json.dumps(good))
        fn(d)
        return d

    assert "not valid JSON" in _bad(tmp_path, None, text='{"schema": ')
    assert "not found" in str(pytest.raises(PlanError, load_plan, tmp_path / "none.json").value)
    assert "missing key 'rw_bytes'" in _bad(tmp_path, mut(lambda d: d.pop("rw_bytes")))
    assert "ram_model" in _bad(tmp_path, mut(lambda d: d.pop("ram_model")))
    assert "schema" in _bad(tmp_path, mut(lambda d: d.update(schema="other/1")))
    assert "must be int" in _bad(tmp_path, mut(lambda d: d.update(ro_bytes="12")))
    assert "must be int" in _bad(tmp_path, mut(lambda d: d["layers"][3].update(w_bits=True)))
    assert "must be bool" in _bad(tmp_path, mut(lambda d: d["layers"][3].update(icn=1)))
    assert "not one of 8, 4, 2" in _bad(tmp_path, mut(lambda d: d["layers"][3].update(w_bits=3)))
    assert "missing key 'act_bytes'" in _bad(
        tmp_path, mut(lambda d: d["layers"][2].pop("act_bytes")))
    assert "kind" in _bad(tmp_path, mut(lambda d: d["layers"][2].update(kind="pool")))
    assert "in_bits" in _bad(tmp_path, mut(lambda d: d["layers"][0].update(in_bits=4)))
    assert "input_bits" in _bad(tmp_path, mut(lambda d: d.update(input_bits=4)))
    # a chain break: layer 5 reads layer 4's output at another precision
    assert "in_bits" in _bad(tmp_path, mut(lambda d: d["layers"][5].update(in_bits=4)))
    assert "ro_bytes" in _bad(tmp_path, mut(lambda d: d.update(ro_bytes=d["ro_bytes"] + 1)))
    assert "weight_bytes" in _bad(
        tmp_path, mut(lambda d: d["layers"][1].update(weight_bytes=1)))
    assert "expected a JSON object" in _bad(tmp_path, [1, 2])
    assert "'layers' is empty" in _bad(tmp_path, mut(lambda d: d.update(layers=[])))
    # without the optional keys the plan is read as a chain
    bare = mut(lambda d: [lo.pop(k) for lo in d["layers"] for k in ("in_from", "n_in", "n_out")])
    assert plan_from_json(bare, g).bits_string() == allocate(g, FLASH, RAM).bits_string()


def test_load_plan_rejects_another_model(tmp_path):
    plan = allocate(zoo_graph("mobilenet_v1_0.25_128"), FLASH, RAM).to_json()
    # same layer names and weights, other resolution
    assert "not 'mobilenet_v1_0.25_224'" in _bad(tmp_path, plan,
                                                  zoo_graph("mobilenet_v1_0.25_224"))
    other = dict(plan, model="mobilenet_v1_0.5_128")
    assert "weights" in _bad(tmp_path, other, zoo_graph("mobilenet_v1_0.5_128"))
    short = dict(plan, model="skipnet")
    msg = _bad(tmp_path, short, build_layer_graph(validate(_skip_model(), origin="s")))
    assert "layers" in msg


# ------------------------------------------------------------------------------------------
# Sizes.

@pytest.mark.parametrize("text,value", [
    ("2048000", 2_048_000), ("2,048,000", 2_048_000), ("2_048_000", 2_048_000),
    ("512000B", 512_000), ("512kB", 512_000), ("512KB", 512_000), ("512k", 512_000),
    ("512KiB", 524_288), ("512 KiB", 524_288), ("2MB", 2_000_000), ("2MiB", 2_097_152),
    ("1.5MB", 1_500_000), ("1GB", 10**9), ("1GiB", 2**30), ("0", 0),
])
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "abc", "-5", "2mib", "2kib", "2 MiBs", "1,5MB",
                                  "1.0001kB", "1e6", "2,04,8000", "_1", "12 34"])
def test_parse_size_rejects(text):
    with pytest.raises(MpqError) as e:
        parse_size(text)
    assert "\n" not in e.value.one_line()


# ------------------------------------------------------------------------------------------
# CLI.

def test_cli_plan_writes_json(tmp_path):
    p = plan_cli("mobilenet_v1_1.0_224", "--flash", "2,048,000", "--ram", "512000",
                 "--json", tmp_path / "plan.json")
    assert p.returncode == 0, p.stderr
    assert "C848 D448 P428 D288" in p.stdout and "block13.pw" in p.stdout
    assert "2,048,000 B budget" in p.stdout and "%" in p.stdout
    d = json.loads((tmp_path / "plan.json").read_text())
    assert list(d) == TOP_KEYS and all(LAYER_KEYS <= set(lo) for lo in d["layers"])
    assert d["flash_bytes"] == 2_048_000 and d["ram_bytes"] == 512_000
    assert d["model"] == zoo_graph("mobilenet_v1_1.0_224").name
    load_plan(tmp_path / "plan.json", zoo_graph("mobilenet_v1_1.0_224"))


def test_cli_device_preset_and_override(tmp_path):
    p = plan_cli("mobilenet_v1_0.25_128", "--device", "stm32h743", "--ram", "256KiB",
                 "--scheme", "mixpl", "--ram-model", "liveness", "--json", tmp_path / "p.json")
    assert p.returncode == 0, p.stderr
    d = json.loads((tmp_path / "p.json").read_text())
    assert (d["flash_bytes"], d["ram_bytes"]) == (2 * 1024 * 1024, 256 * 1024)
    assert d["scheme"] == "mixpl" and d["ram_model"] == "liveness"
    assert "folded" in p.stdout


def test_cli_impossible_budget(tmp_path):
    out = tmp_path / "p.json"
    p = plan_cli("mobilenet_v1_1.0_224", "--flash", "2MB", "--ram", "100kB", "--json", out)
    assert_user_error(p, "RAM budget 100,000 B cannot be met", "block1.pw")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    p = plan_cli("mobilenet_v1_1.0_224", "--flash", "500kB", "--ram", "512kB", "--json", out)
    assert_user_error(p, "FLASH budget 500,000 B cannot be met")
    assert not out.exists()


@pytest.mark.parametrize("args", [
    ["--flash", "2XB", "--ram", "512kB"],
    ["--flash", "2MB", "--ram", "lots"],
    ["--flash", "2MB"],
    ["--flash", "0", "--ram", "512kB"],
])
def test_cli_bad_sizes(tmp_path, args):
    p = plan_cli("mobilenet_v1_0.25_128", *args, "--json", tmp_path / "p.json")
    assert_user_error(p)
    assert not (tmp_path / "p.json").exists()


def test_cli_help_has_examples():
    p = plan_cli("--help")
    assert p.returncode == 0 and "--device stm32h743" in p.stdout and "examples:" in p.stdout


def test_docs_exist():
    assert (Path(ROOT) / "docs" / "plan.md").exists()
