"""Compile the 16 ImageNet MobileNetV1 configurations for the STM32H743 (qemu_m7 board,
linked with its 2 MB FLASH / 512 kB RAM) with the MixPC plan at 2,048,000 B / 512,000 B
(synthetic weights and calibration), and print a markdown table: FLASH and RAM of the
firmware (arm-none-eabi-size) or the error saying by how much it does not fit.

    .venv/bin/python bench/compile_table.py [--widths 0.25,0.5] [--out-dir /tmp/mbv1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--widths", default="0.25,0.5,0.75,1.0")
    ap.add_argument("--resolutions", default="128,160,192,224")
    ap.add_argument("--flash", default="2048000")
    ap.add_argument("--ram", default="512000")
    ap.add_argument("--scheme", default="mixpc")
    ap.add_argument("--out-dir", default="/tmp/tvm-mpq-compile-table")
    args = ap.parse_args()
    print("| model | plan (bits) | firmware FLASH (B) | firmware RAM (B) | arena (B) | "
          "result | compile s |")
    print("|---|---|---:|---:|---:|---|---:|")
    for w in args.widths.split(","):
        for r in args.resolutions.split(","):
            name = f"mobilenet_v1_{w}_{r}"
            out = Path(args.out_dir) / name
            t = time.time()
            p = subprocess.run([str(ROOT / ".venv/bin/tvm-mpq"), "-q", "compile", name,
                                "--flash", args.flash, "--ram", args.ram, "--scheme",
                                args.scheme, "--num-samples", "8", "-o", str(out)],
                               capture_output=True, text=True)
            dt = time.time() - t
            if p.returncode == 0:
                meta = json.loads((out / "metadata.json").read_text())
                sizes = _sizes(out)
                bits = " ".join(f"{layer['in_bits']}{layer['out_bits']}{layer.get('w_bits') or ''}"
                                for layer in meta["layers"] if layer.get("w_bits"))
                low = sum(1 for layer in meta["layers"]
                          if (layer.get("w_bits") or 8) < 8 or layer["out_bits"] < 8)
                result = "fits at 8 bits" if low == 0 else f"fits, mixed ({low} layers < 8 bit)"
                print(f"| {name} | {bits[:40]}... | {sizes[0]:,} | {sizes[1]:,} | "
                      f"{meta['memory']['arena_bytes']:,} | {result} | {dt:.0f} |")
            else:
                err = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "failed"
                print(f"| {name} | - | - | - | - | {err.replace('|', '/')} | {dt:.0f} |")
            sys.stdout.flush()
    return 0


def _sizes(out: Path) -> tuple[int, int]:
    from tvm_mpq.target.build import memory_report

    m = memory_report(out / "build/qemu_m7/mpq_firmware.elf")
    return m["flash_bytes"], m["ram_bytes"]


if __name__ == "__main__":
    sys.exit(main())
