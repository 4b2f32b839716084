"""Build the tiny test model for QEMU's Cortex-M7 and print its exact instruction counts:
the whole run, each kernel's address range and each profiled layer. A template for kernel
benches: swap the codegen directory and the kernel names.

    .venv/bin/python bench/qemu_insn_smoke.py [--codegen DIR] [--kernel NAME ...]
                                              [--build-dir DIR] [--repeat N]

Counts are executed instructions (QEMU TCG plugin), not cycles: a Cortex-M7 issues up to
two instructions a cycle. Wall time is QEMU's, for the whole run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tvm_mpq.errors import MpqError
from tvm_mpq.target import build_firmware, memory_report, run_qemu

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--codegen", type=Path, default=ROOT / "tests" / "fixtures" / "tiny_model")
    p.add_argument("--kernel", action="append", help="function to count (default: the "
                   "tiny model's times3, plus1)")
    p.add_argument("--build-dir", type=Path, help="default: a temporary directory")
    p.add_argument("--repeat", type=int, default=3, help="runs, to show the counts repeat")
    args = p.parse_args(argv)
    kernels = args.kernel or ["times3", "plus1"]
    try:
        with tempfile.TemporaryDirectory(prefix="mpq-bench-") as tmp:
            t0 = time.perf_counter()
            elf = build_firmware(None, "qemu_m7", args.build_dir or Path(tmp), profile=True,
                                 codegen_dir=args.codegen)
            build_s = time.perf_counter() - t0
            mem = memory_report(elf)
            x = np.random.default_rng(0).integers(0, 256, _input_bytes(args.codegen),
                                                  dtype=np.uint8).tobytes()
            runs = [run_qemu(elf, x, ranges=kernels) for _ in range(args.repeat)]
    except MpqError as e:
        print(f"qemu_insn_smoke: error: {e.one_line()}", file=sys.stderr)
        return 2
    r = runs[0]
    print(f"build {build_s:.2f} s; FLASH {mem['flash_bytes']:,} B, RAM {mem['ram_bytes']:,} B "
          f"(of which heap+stack {mem['reserved_bytes']:,} B)")
    print(f"instructions, whole run: {r.instructions_total:,}")
    for name, n in r.instructions_by_range.items():
        print(f"instructions, {name}: {n:,}")
    for row in r.profile:
        print(f"layer {row.layer} {row.name}: {row.instructions:,} instructions "
              f"({row.counter} timer ticks)")
    same = all(x.instructions_total == r.instructions_total for x in runs)
    walls = ", ".join(f"{x.wall_s * 1000:.0f}" for x in runs)
    print(f"repeatable over {len(runs)} runs: {'yes' if same else 'NO'}; QEMU wall ms: {walls}")
    return 0 if same else 1


def _input_bytes(codegen: Path) -> int:
    for line in (codegen / "model.h").read_text().splitlines():
        parts = line.split()
        if parts[:2] == ["#define", "MPQ_INPUT_BYTES"]:
            return int(parts[2])
    raise SystemExit(f"no MPQ_INPUT_BYTES in {codegen / 'model.h'}")


if __name__ == "__main__":
    sys.exit(main())
