"""`tvm-mpq report`: one self-contained HTML page about a compiled build.

Plots (matplotlib PNGs embedded as data URIs, no external files): bit widths per layer,
FLASH and RAM per layer against the budgets, the static arena (tensor lifetimes and
offsets), executed instructions per layer (after `tvm-mpq run --profile`), and the
accuracy table (after `tvm-mpq demo`). Deterministic for the same inputs.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from .. import ops



def _color(kind: str) -> str:
    """The report colour its operator declares for a layer or kernel kind."""
    return next((op.colors[kind] for op in ops.all_ops() if kind in op.colors), "#999999")


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _plt():
    import logging

    # a fresh machine builds matplotlib's font cache and says so: not the user's business
    logging.getLogger("matplotlib").setLevel(logging.ERROR)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
                         "svg.hashsalt": "tvm-mpq"})
    return plt


def plot_bits(layers) -> str:
    plt = _plt()
    names = [layer["name"] for layer in layers]
    x = range(len(layers))
    fig, ax = plt.subplots(figsize=(11, 3.2))
    w = [layer.get("w_bits") or 0 for layer in layers]
    a = [layer["out_bits"] for layer in layers]
    ax.bar([i - 0.2 for i in x], w, 0.4, label="weights", color="#4c72b0")
    ax.bar([i + 0.2 for i in x], a, 0.4, label="output activations", color="#dd8452")
    ax.set_yticks([2, 4, 8])
    ax.set_ylabel("bits")
    ax.set_xticks(list(x), names, rotation=70, ha="right")
    ax.set_title("Bit width per layer", loc="right")
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.02), ncols=2, frameon=False)
    return _png(fig)


def plot_memory(layers, meta) -> str:
    plt = _plt()
    names = [layer["name"] for layer in layers]
    x = list(range(len(layers)))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.4))
    flash = [layer["const_bytes"] / 1000 for layer in layers]
    colors = [_color(layer["kind"]) for layer in layers]
    a1.bar(x, flash, color=colors)
    from matplotlib.patches import Patch

    kinds = sorted({layer["kind"] for layer in layers})
    a1.legend(handles=[Patch(color=_color(k), label=k) for k in kinds],
              frameon=False, fontsize=7, loc="upper left")
    a1.set_title(f"FLASH per layer (weights + ICN parameters), total "
                 f"{meta['memory']['const_bytes'] / 1000:.1f} kB")
    a1.set_ylabel("kB")
    a1.set_xticks(x, names, rotation=70, ha="right", fontsize=7)
    steps = meta["memory"]["arena"]["buffers"]
    live = []
    for s in x:
        live.append(sum(b["bytes"] for b in steps if b["first_step"] <= s <= b["last_step"]) / 1000)
    a2.bar(x, live, color="#dd8452")
    a2.axhline(meta["memory"]["arena_bytes"] / 1000, color="k", lw=1, ls="--",
               label=f"arena {meta['memory']['arena_bytes'] / 1000:.1f} kB")
    budget = (meta.get("budget") or {})
    if budget.get("ram_bytes"):
        a2.axhline(budget["ram_bytes"] / 1000, color="#c44e52", lw=1.5,
                   label=f"RAM budget {budget['ram_bytes'] / 1000:.1f} kB")
    a2.set_title("RAM: live tensors per layer step")
    a2.set_ylabel("kB")
    a2.set_xticks(x, names, rotation=70, ha="right", fontsize=7)
    a2.legend(frameon=False, fontsize=8, loc="upper right")
    return _png(fig)


def plot_arena(meta, layers) -> str:
    plt = _plt()
    from matplotlib.patches import Rectangle

    bufs = meta["memory"]["arena"]["buffers"]
    fig, ax = plt.subplots(figsize=(11, 3.6))
    for i, b in enumerate(bufs):
        color = "#c44e52" if b["name"] in ("input", "output") else (
            "#8172b2" if b["kind"] == "scratch" else "#4c72b0")
        ax.add_patch(Rectangle((b["first_step"] - 0.45, b["offset"] / 1000),
                               b["last_step"] - b["first_step"] + 0.9, b["bytes"] / 1000,
                               facecolor=color, edgecolor="white", alpha=0.85))
    n = len(layers)
    ax.set_xlim(-0.8, n - 0.2)
    ax.set_ylim(0, max(1e-3, meta["memory"]["arena_bytes"] / 1000) * 1.05)
    ax.set_xticks(range(n), [layer["name"] for layer in layers], rotation=70, ha="right",
                  fontsize=7)
    ax.set_ylabel("arena offset (kB)")
    ax.set_title(f"Static arena ({meta['memory']['arena']['strategy']} placement): each box is "
                 "a tensor, from the layer that writes it to the last that reads it "
                 "(red: model input/output)")
    return _png(fig)


def plot_profile(profile, layers) -> str:
    plt = _plt()
    names = [r["name"] for r in profile["layers"]]
    ins = [r["instructions"] / 1e6 for r in profile["layers"]]
    macs = {layer["name"]: layer.get("macs", 0) for layer in layers}
    per = [r["instructions"] / macs[r["name"]] if macs.get(r["name"]) else 0
           for r in profile["layers"]]
    fig, a1 = plt.subplots(figsize=(11, 3.4))
    x = list(range(len(names)))
    colors = [_color(layer["kind"]) for layer in layers][:len(names)]
    a1.bar(x, ins, color=colors)
    a1.set_ylabel("executed instructions (M)")
    a1.set_xticks(x, names, rotation=70, ha="right", fontsize=7)
    a2 = a1.twinx()
    a2.plot(x, per, "k.-", lw=1, label="instructions / MAC")
    a2.set_ylabel("instructions / MAC")
    a2.legend(frameon=False, loc="upper right")
    a1.set_title(f"Executed instructions per layer on the emulated Cortex-M7 (total "
                 f"{profile['total_instructions'] / 1e6:.2f} M per inference; instructions, "
                 "not cycles)")
    return _png(fig)


def _table(headers, rows) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CSS = """body{font-family:system-ui,sans-serif;max-width:1180px;margin:24px auto;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:12px;margin:8px 0}td,th{padding:3px 8px;
border-bottom:1px solid #eee;text-align:right}td:nth-child(2),th:nth-child(2),td:first-child{text-align:left}
.kpi{display:flex;gap:14px;flex-wrap:wrap}.kpi div{background:#f4f6fa;border-radius:6px;
padding:10px 14px}.kpi b{display:block;font-size:20px}img{max-width:100%}"""


def render_report(outdir: str | Path) -> str:
    from ..codegen.project import read_metadata

    outdir = Path(outdir)
    meta = read_metadata(outdir)
    layers = meta["layers"]
    budget = meta.get("budget") or {}
    profile = _load(outdir / "profile.json")
    demo = _load(outdir / "demo_summary.json")
    kpis = [("model", meta["model"]), ("board", meta["board"]),
            ("MACs", f"{meta['total_macs']:,}"),
            ("FLASH (weights+params)", f"{meta['memory']['const_bytes']:,} B"),
            ("RAM (static arena)", f"{meta['memory']['arena_bytes']:,} B")]
    if budget:
        kpis.append(("budget", f"{budget.get('flash_bytes', 0):,} B / "
                               f"{budget.get('ram_bytes', 0):,} B"))
    if profile:
        kpis.append(("instructions / inference", f"{profile['total_instructions']:,}"))
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>tvm-mpq report: "
             f"{html.escape(meta['model'])}</title><style>{CSS}</style></head><body>",
             f"<h1>tvm-mpq report: {html.escape(meta['model'])} on {html.escape(meta['board'])}"
             "</h1>", "<div class='kpi'>" + "".join(
                 f"<div>{html.escape(k)}<b>{html.escape(str(v))}</b></div>" for k, v in kpis)
             + "</div>"]
    if demo:
        parts.append("<h2>Accuracy (Fashion-MNIST test set)</h2>")
        parts.append(_table(["", "top-1"], [[k, f"{100 * v:.2f}%"]
                                            for k, v in demo["accuracy"].items()]))
    parts.append("<h2>Precision</h2>")
    parts.append(f"<img alt='bits per layer' src='{plot_bits(layers)}'>")
    parts.append("<h2>Memory</h2>")
    parts.append(f"<img alt='memory per layer' src='{plot_memory(layers, meta)}'>")
    parts.append(f"<img alt='arena' src='{plot_arena(meta, layers)}'>")
    if profile:
        parts.append("<h2>Instructions</h2>")
        parts.append(f"<img alt='instructions per layer' src='{plot_profile(profile, layers)}'>")
    parts.append("<h2>Layers</h2>")
    prof = {r["name"]: r["instructions"] for r in (profile or {}).get("layers", [])}
    rows = [[layer["index"], layer["name"], layer["kind"], layer["in_desc"], layer["out_desc"],
             layer["in_bits"], layer["out_bits"], layer.get("w_bits") or "-",
             f"{layer.get('macs', 0):,}", f"{layer['const_bytes']:,}", f"{layer['out_bytes']:,}",
             f"{prof[layer['name']]:,}" if layer["name"] in prof else "-"] for layer in layers]
    parts.append(_table(["#", "layer", "kind", "input", "output", "in bits", "out bits",
                         "w bits", "MACs", "FLASH B", "output B", "instructions"], rows))
    parts.append("<p style='color:#777;font-size:11px'>Generated by tvm-mpq from "
                 f"{html.escape(str(outdir / 'metadata.json'))}.</p></body></html>\n")
    return "\n".join(parts)


def _load(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None
