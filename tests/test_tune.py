"""`tvm-mpq tune`: the MetaSchedule design space, the records, the CLI on QEMU, resuming a
killed run, and compiling with the records (deterministic C)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tvm_mpq import tvm_adapter as ta
from tvm_mpq.cli import main as cli
from tvm_mpq.codegen import kernel_dsp
from tvm_mpq.codegen.kernels import KernelSpec
from tvm_mpq.tune import space
from tvm_mpq.tune.records import Records, RecordsError

ROOT = Path(__file__).resolve().parents[1]
QDQ = ROOT / "models" / "fashion_mnist" / "mobilenet_v1_0.25_28.mixpc_100kB_12kB.qat.onnx"
CLI = [sys.executable, "-m", "tvm_mpq.cli"]


def test_design_space_samples_valid_knobs_and_the_builder_reads_them():
    spec = KernelSpec("pointwise", (1, 6, 6, 16), (1, 6, 6, 8), w_signed=True, z_in=3)
    mod = ta.tvm().IRModule({"main": space.workload(spec)})
    seen = set()
    for seed in range(12):
        sch = ta.schedule_class()(mod, seed=seed + 1)
        space.schedule_fn(sch)
        sched = space.schedule_of_mod(sch.mod)
        assert set(sched) == {"pix", "ch", "unroll"}
        assert all(v in kernel_dsp.schedule_space(spec)[k] for k, v in sched.items())
        # the annotated knobs are the loop tiling of the nest (features for XGBoost)
        assert space.spec_of_mod(sch.mod) == space.tuning_spec(spec)
        seen.add(tuple(sorted(sched.items())))
    assert len(seen) > 3
    # zero points do not make a new task; bit widths do
    assert space.tuning_key(spec) == space.tuning_key(
        KernelSpec("pointwise", (1, 6, 6, 16), (1, 6, 6, 8), w_signed=True, z_in=100))
    assert space.tuning_key(spec) != space.tuning_key(
        KernelSpec("pointwise", (1, 6, 6, 16), (1, 6, 6, 8), w_signed=True, w_bits=4))


def test_records_validation(tmp_path):
    bad = tmp_path / "r.json"
    bad.write_text("{not json")
    with pytest.raises(RecordsError, match="not valid JSON"):
        Records.load(bad)
    bad.write_text(json.dumps({"schema": "other"}))
    with pytest.raises(RecordsError, match="tuning records file"):
        Records.load(bad)
    with pytest.raises(RecordsError, match="do not exist"):
        Records.load(tmp_path / "missing.json")
    spec = KernelSpec("pointwise", (1, 6, 6, 16), (1, 6, 6, 8), out_bits=2)
    r = Records(workloads=[{"key": space.tuning_key(spec),
                            "best": {"schedule": {"pix": 4, "ch": 2}, "instructions": 1}}])
    with pytest.raises(RecordsError, match="not valid"):
        r.schedule_for(spec)          # 4 pixels x 4 channels a byte: too many accumulators


def test_compile_with_bad_records_is_a_user_error(tmp_path, capsys):
    bad = tmp_path / "r.json"
    bad.write_text("[]")
    rc = cli(["compile", str(QDQ), "--tuning-records", str(bad), "-o", str(tmp_path / "o"),
              "--no-build"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "tuning records" in err[0]
    assert not (tmp_path / "o").exists()


def _trials(work: Path) -> list[dict]:
    path = work / "trials.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines()] if path.is_file() else []


@pytest.mark.slow
def test_tune_records_resume_and_deterministic_compile(tmp_path):
    rec = tmp_path / "demo.tune.json"
    work = Path(str(rec) + ".work")
    layers = ["--layers", "block4.pw", "block6.pw", "fc"]
    # a run killed in the middle of its second layer ...
    proc = subprocess.Popen(CLI + ["tune", str(QDQ), "--trials", "5", "-o", str(rec)]
                            + layers, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    t0 = time.time()
    while time.time() - t0 < 300 and proc.poll() is None:
        keys = {t["key"] for t in _trials(work)}
        if len(keys) >= 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _trials(work)
    assert before
    if rec.exists():                      # what was written is complete JSON
        Records.load(rec)
    # ... resumes: nothing measured twice, nothing lost
    out = subprocess.run(CLI + ["tune", str(QDQ), "--trials", "5", "-o", str(rec)] + layers,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    after = _trials(work)
    assert after[:len(before)] == before
    pairs = [(t["key"], json.dumps(t["schedule"], sort_keys=True)) for t in after]
    assert len(pairs) == len(set(pairs))
    records = Records.load(rec)
    assert len(records.workloads) == 3
    for w in records.workloads.values():
        assert 1 <= w["trials"] <= 5
        assert w["best"]["instructions"] <= w["default"]["instructions"]
        mine = [t for t in after if t["key"] == w["key"] and "instructions" in t]
        assert w["best"]["instructions"] == min(t["instructions"] for t in mine)
    assert "total over the" in out.stdout and "block6.pw" in out.stdout

    # compiling with the records twice gives the same C, and the tuned layers are named
    srcs = []
    for i in range(2):
        d = tmp_path / f"out{i}"
        assert cli(["-q", "compile", str(QDQ), "--tuning-records", str(rec), "-o", str(d),
                    "--board", "host"]) == 0
        srcs.append({p.name: p.read_bytes() for p in sorted((d / "codegen").iterdir())})
        meta = json.loads((d / "metadata.json").read_text())
    assert srcs[0] == srcs[1]
    tuned = set(meta["tuning"]["tuned_layers"])
    assert tuned <= {"block4.pw", "block6.pw", "fc"}
    # the tuned host build computes the same bytes as the golden model
    rc = cli(["-q", "run", str(tmp_path / "out0"), "--board", "host", "--reference"])
    assert rc == 0


@pytest.mark.parametrize("args, msg", [
    (["--layers", "no_such_layer*"], "no tunable layer selected"),
    (["--trials", "0"], "--trials must be at least 1"),
    (["--rpc-tracker", "localhost:9190"], "give both --rpc-tracker"),
    (["--rpc-tracker", "nohost", "--rpc-key", "k"], "HOST:PORT"),
])
def test_tune_user_errors(tmp_path, capsys, args, msg):
    rc = cli(["tune", str(QDQ), "-o", str(tmp_path / "r.json")] + args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and msg in err[0], err
    assert not (tmp_path / "r.json").exists()


def test_design_space_samples_only_valid_points_and_covers_them():
    """The design space is the layer's valid schedules (no candidate wasted on one the
    constraints forbid), the default first; sampling reaches all of a depthwise layer's."""
    dw = KernelSpec("depthwise", (1, 8, 8, 16), (1, 8, 8, 16), kernel=3, pad=1)
    pw = KernelSpec("pointwise", (1, 6, 6, 16), (1, 6, 6, 8), out_bits=4)
    for spec in (dw, pw):
        pts = space.points(spec)
        assert pts[0] == kernel_dsp.resolve_schedule(spec)
        assert all(kernel_dsp.valid_schedule(spec, p) for p in pts)
        assert len({tuple(sorted(p.items())) for p in pts}) == len(pts)
    assert len(space.points(dw)) == 4 and len(space.points(pw)) > 12
    mod = ta.tvm().IRModule({"main": space.workload(dw)})
    seen = set()
    for seed in range(24):
        sch = ta.schedule_class()(mod, seed=seed + 1)
        space.schedule_fn(sch)
        seen.add(tuple(sorted(space.schedule_of_mod(sch.mod).items())))
    assert len(seen) == 4


@pytest.mark.slow
def test_small_spaces_are_measured_whole(tmp_path):
    """A depthwise layer has 4 schedule points: with --trials 10 every one is measured
    (the evolutionary search's misses topped up in the space's order), the best recorded."""
    rec = tmp_path / "r.json"
    out = subprocess.run(CLI + ["tune", str(QDQ), "--trials", "10", "--layers", "block13.dw",
                                "-o", str(rec)], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    (w,) = json.loads(rec.read_text())["workloads"]
    assert w["trials"] == 4
    trials = [t for t in _trials(Path(str(rec) + ".work")) if t["key"] == w["key"]]
    measured = [t for t in trials if "instructions" in t]
    assert len({tuple(sorted(t["schedule"].items())) for t in measured}) == 4
    assert w["best"]["instructions"] == min(t["instructions"] for t in measured)
    assert w["best"]["instructions"] <= w["default"]["instructions"]
