"""Tuned vs default kernels on a whole network: `tvm-mpq tune` then two builds, executed
Cortex-M7 instructions per layer and in total on QEMU (exact counts), outputs compared.

    .venv/bin/python bench/tune_bench.py                       # mobilenet_v1_0.75_224 MixPC
    .venv/bin/python bench/tune_bench.py --model models/fashion_mnist/mobilenet_v1_0.25_28.mixpc_100kB_12kB.qat.onnx
    .venv/bin/python bench/tune_bench.py --layers 'block1*' 'block2*' --trials 6

The ImageNet-size zoo model is planned for the STM32H743 (2 MiB / 512 KiB, MixPC) with
synthetic calibration (the weights are random: instruction counts do not depend on them).
Records and builds go to --work (default /tmp/mpq-tune-bench); rerunning resumes.
Instructions are not cycles (a Cortex-M7 issues up to two per cycle).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from tvm_mpq.cli import main as cli
from tvm_mpq.codegen.project import read_metadata
from tvm_mpq.evaluate import profile_layers, run_batch
from tvm_mpq.report.table import format_table


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="mobilenet_v1_0.75_224")
    p.add_argument("--device", default="stm32h743")
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--layers", nargs="+")
    p.add_argument("--work", type=Path, default=Path("/tmp/mpq-tune-bench"))
    args = p.parse_args(argv)
    w = args.work
    w.mkdir(parents=True, exist_ok=True)
    zoo = not args.model.endswith(".onnx")
    budget = ["--device", args.device] if zoo else []
    default, tuned, rec = w / "default", w / "tuned", w / "records.json"
    if not (default / "metadata.json").is_file():
        # compile once (plan + calibrate); the tuned build reuses its QDQ model
        rc = cli(["-q", "compile", args.model, *budget, "-o", str(default), "--no-build"])
        if rc:
            return rc
    qdq = str(default / "model.qdq.onnx")
    tune = ["tune", str(default), "--trials", str(args.trials), "-o", str(rec)]
    if cli(tune + (["--layers", *args.layers] if args.layers else [])):
        return 1
    if cli(["-q", "compile", qdq, "--tuning-records", str(rec), "-o", str(tuned),
            "--no-build"]):
        return 1
    meta = read_metadata(default)
    shape = meta["input"]["shape_nhwc"]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, *shape[1:])).astype(np.float32)
    prof_d = profile_layers(default, x)
    prof_t = profile_layers(tuned, x)
    same = (run_batch(default, "qemu_m7", x).outputs.tobytes()
            == run_batch(tuned, "qemu_m7", x).outputs.tobytes())
    macs = {la["name"]: la.get("macs") for la in meta["layers"]}
    sched = {la["name"]: la.get("schedule") for la in read_metadata(tuned)["layers"]}
    rows = []
    for a, b in zip(prof_d["layers"], prof_t["layers"]):
        n = a["name"]
        s = " ".join(f"{k}={v}" for k, v in sorted((sched.get(n) or {}).items()))
        rows.append([n, macs.get(n) or "-", a["instructions"], b["instructions"],
                     f"{b['instructions'] / a['instructions'] - 1:+.1%}", s or "-"])
    td, tt = prof_d["total_instructions"], prof_t["total_instructions"]
    total_macs = sum(v for v in macs.values() if v)
    rows.append(["total", total_macs, td, tt, f"{tt / td - 1:+.1%}", ""])
    print(format_table(["layer", "MACs", "default insn", "tuned insn", "change",
                        "tuned schedule"], rows, align="lrrrrl"))
    print(f"{args.model}: default {td:,} ({td / total_macs:.2f}/MAC), tuned {tt:,} "
          f"({tt / total_macs:.2f}/MAC), {tt / td - 1:+.1%}; outputs "
          f"{'byte-identical' if same else 'DIFFER'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
