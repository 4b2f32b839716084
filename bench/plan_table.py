"""Print the markdown table of docs/plan.md: the 16 ImageNet MobileNetV1 configurations
(widths 0.25/0.5/0.75/1.0 x resolutions 128/160/192/224) planned for an STM32H7-class
budget (default 2,048,000 B FLASH, 512,000 B RAM, MixPC, chain RAM model).

    .venv/bin/python bench/plan_table.py [--flash SIZE] [--ram SIZE] [--scheme mixpc|mixpl]
                                         [--ram-model chain|liveness]
"""

from __future__ import annotations

import argparse

from tvm_mpq.errors import BudgetError
from tvm_mpq.frontend.graph import build_layer_graph
from tvm_mpq.frontend.loader import load_model, validate
from tvm_mpq.memory.allocation import allocate, footprint_8bit
from tvm_mpq.models.mobilenet_v1 import IMAGENET_RESOLUTIONS, WIDTHS
from tvm_mpq.units import parse_size


def _counts(values) -> str:
    values = list(values)
    return "/".join(str(sum(1 for v in values if v == b)) for b in (8, 4, 2))


def rows(flash: int, ram: int, scheme: str, ram_model: str):
    for w in WIDTHS:
        for r in IMAGENET_RESOLUTIONS:
            name = f"mobilenet_v1_{w:g}_{r}"
            g = build_layer_graph(validate(load_model(name)))
            ro8, rw8 = footprint_8bit(g, scheme, ram_model)
            fits8 = ro8 <= flash and rw8 <= ram
            try:
                p = allocate(g, flash, ram, scheme=scheme, ram_model=ram_model)
            except BudgetError as e:
                yield [name, _yn(fits8, ro8, rw8), f"no: {e.one_line()}", "", "", ""]
                continue
            weights = _counts(lp.w_bits for lp in p.layers)
            acts = _counts(lp.out_bits for lp in p.layers)
            yield [name, _yn(fits8, ro8, rw8), "yes", f"{p.ro_bytes:,}", f"{p.rw_bytes:,}",
                   f"w {weights}, act {acts}"]


def _yn(fits: bool, ro8: int, rw8: int) -> str:
    return f"{'yes' if fits else 'no'} ({ro8:,} / {rw8:,})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flash", default="2048000")
    ap.add_argument("--ram", default="512000")
    ap.add_argument("--scheme", default="mixpc", choices=["mixpc", "mixpl"])
    ap.add_argument("--ram-model", default="chain", choices=["chain", "liveness"])
    a = ap.parse_args()
    flash, ram = parse_size(a.flash), parse_size(a.ram)
    print(f"FLASH {flash:,} B, RAM {ram:,} B, scheme {a.scheme}, RAM model {a.ram_model}. "
          "Bits summary: how many of the 28 weight tensors / layer outputs are at 8/4/2 bits.")
    print()
    print("| model | fits at 8 bits? (ro / rw at 8 bits, B) | fits mixed? | ro_bytes | "
          "rw_bytes | bits 8/4/2 |")
    print("|---|---|---|---:|---:|---|")
    for row in rows(flash, ram, a.scheme, a.ram_model):
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
