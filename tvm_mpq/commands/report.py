"""`tvm-mpq report OUTDIR`: a self-contained HTML page about a compiled build."""

from __future__ import annotations

from pathlib import Path

from ..fsutil import write_text_atomic
from .common import out, verb_parser


def register(sub) -> None:
    p = verb_parser(sub, "report", "write an HTML report (plots of bits, memory, arena, "
                    "instructions, accuracy) for a compiled build directory",
                    "  tvm-mpq report build/demo\n"
                    "  tvm-mpq run build/m --profile && tvm-mpq report build/m -o m.html\n")
    p.add_argument("outdir", metavar="OUTDIR", help="a directory written by tvm-mpq compile")
    p.add_argument("-o", "--output", metavar="report.html",
                   help="default: OUTDIR/report.html")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..report.html import render_report

    text = render_report(args.outdir)
    dst = Path(args.output or Path(args.outdir) / "report.html")
    write_text_atomic(dst, text)
    out(f"wrote {dst} ({len(text) / 1024:.0f} KiB, self-contained)")
    return 0
