"""Executed Cortex-M7 instructions per MAC of the fast (DSP) kernels against the plain ones,
on the benchmark layer shapes L1-L7 (docs/benchmarks.md), exact counts on
QEMU mps2-an500 (TCG plugin, kernel address range only), every output checked bit for bit
against the numpy golden model. Optionally whole networks from `tvm-mpq compile` build
directories (`tvm-mpq run DIR --profile` output summed).

    .venv/bin/python bench/kernel_bench.py [--bits 8,8,8 ...] [--only L1,L5] [--no-plain]
    .venv/bin/python bench/kernel_bench.py --nets-only --net DSP_DIR:PLAIN_DIR ...

Instruction counts are not cycles (a Cortex-M7 issues up to two per cycle); the floor of
an SMLAD dot product is 0.5 instructions per MAC. CMSIS-NN int8 (same shapes, same
emulator): L1 1.56, L2 2.65, L3 4.87, L4 1.93, L5 8.58, L6 8.83, L7 1.92.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from kernel_c_smoke import LAYERS, make_layer, qemu_count  # noqa: E402

from tvm_mpq.codegen import kernel_dsp  # noqa: E402
from tvm_mpq.codegen.kernels import generate_kernel  # noqa: E402

CMSIS_INT8 = {"L1": 1.56, "L2": 2.65, "L3": 4.87, "L4": 1.93, "L5": 8.58, "L6": 8.83,
              "L7": 1.92}
DEFAULT_BITS = ["8,8,8", "8,8,4", "8,8,2", "4,4,4", "4,4,2", "2,2,2"]


def kernel_rows(combos, layers, plain: bool, tmp: Path, schedule: dict | None = None):
    print("| layer | bits i/o/w | MACs | DSP insn | DSP insn/MAC | x 8/8/8 | plain insn/MAC "
          "| speed-up | CMSIS-NN int8 | exact |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    base = {}
    ok = True
    for bits in combos:
        for lid in layers:
            spec, x, consts, want, macs = make_layer(lid, bits)
            spec = dataclasses.replace(spec, dsp=True)
            if schedule and kernel_dsp.valid_schedule(spec, schedule):
                spec = spec.with_schedule(schedule)
            k = generate_kernel(spec)
            n_fast, good = qemu_count(tmp, k, x, consts, want)
            per = n_fast / macs
            if bits == (8, 8, 8):
                base[lid] = per
            ratio = f"{per / base[lid]:.2f}" if lid in base else "-"
            plain_s = speed = "-"
            if plain:
                kp = generate_kernel(dataclasses.replace(spec, dsp=False, suffix=lid + "_plain"))
                n_plain, good_p = qemu_count(tmp, kp, x, consts, want)
                good = good and good_p
                plain_s, speed = f"{n_plain / macs:.2f}", f"{n_plain / n_fast:.1f}x"
            ok = ok and good
            print(f"| {lid} | {'/'.join(map(str, bits))} | {macs:,} | {n_fast:,} | {per:.2f} | "
                  f"{ratio} | {plain_s} | {speed} | {CMSIS_INT8[lid]} | "
                  f"{'ok' if good else 'WRONG'} |", flush=True)
    return ok


_PROFILE_ROW = re.compile(r"^\s*(\d+)\s+(\S+)\s+.*?([\d,]+)\s+insn", re.M)


def net_profile(build: Path) -> str:
    """`tvm-mpq run BUILD --profile` output."""
    return subprocess.run([sys.executable, "-m", "tvm_mpq.cli", "run", str(build), "--profile"],
                          capture_output=True, text=True, check=True).stdout


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bits", action="append", help="in,out,weight bits (repeatable)")
    p.add_argument("--only", help="comma-separated layer ids (default: all)")
    p.add_argument("--no-plain", action="store_true", help="skip the plain kernels")
    p.add_argument("--net", action="append", default=[],
                   help="DSP_BUILD_DIR:PLAIN_BUILD_DIR of `tvm-mpq compile` (repeatable)")
    p.add_argument("--nets-only", action="store_true")
    p.add_argument("--schedule", type=json.loads,
                   help='a schedule (JSON, e.g. \'{"pix": 8, "ch": 1}\') for the layers it fits')
    args = p.parse_args(argv)
    ok = True
    if not args.nets_only:
        combos = [tuple(int(v) for v in b.split(",")) for b in (args.bits or DEFAULT_BITS)]
        layers = args.only.split(",") if args.only else list(LAYERS)
        with tempfile.TemporaryDirectory(prefix="mpq-bench-") as tmp:
            ok = kernel_rows(combos, layers, not args.no_plain, Path(tmp), args.schedule)
    for pair in args.net:
        for d in pair.split(":"):
            print(f"\n### {d}\n")
            print(net_profile(Path(d)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
