"""`tvm-mpq compile`: a model -> a firmware project (and firmware) for a board."""

from __future__ import annotations

from pathlib import Path

from ..errors import MpqError
from ..report.table import format_table
from .common import add_model_args, log, out, verb_parser

from .plan import DEVICES  # one table of device presets


def add_budget_args(p) -> None:
    p.add_argument("--device", choices=sorted(DEVICES),
                   help="device preset: stm32h743 = 2 MiB FLASH, 512 KiB RAM")
    p.add_argument("--flash", metavar="SIZE", help="FLASH budget (bytes; kB, KiB, MB, MiB)")
    p.add_argument("--ram", metavar="SIZE", help="RAM budget for activations")
    p.add_argument("--scheme", choices=["mixpl", "mixpc"], default="mixpc",
                   help="per-layer (mixpl) or per-channel (mixpc, default) weights")
    p.add_argument("--ram-model", choices=["chain", "liveness"], default=None,
                   help="default: chain for a chain of layers (the paper's), liveness for "
                        "graphs with residual adds or branches")


def budget_from_args(args):
    from ..flow import Budget
    from ..units import parse_size

    if args.device is None and args.flash is None and args.ram is None:
        return None
    flash, ram = DEVICES.get(args.device, (None, None))
    if args.flash is not None:
        flash = parse_size(args.flash)
    if args.ram is not None:
        ram = parse_size(args.ram)
    if flash is None or ram is None:
        raise MpqError("give both --flash and --ram, or --device")
    return Budget(flash, ram, args.scheme, args.ram_model)


def register(sub) -> None:
    p = verb_parser(sub, "compile", "compile a model into a firmware project (C, memory plan, "
                    "CMake) for a board, and build it",
                    "  tvm-mpq compile qmodel.onnx --board qemu_m7 -o build/m\n"
                    "  tvm-mpq compile mobilenet_v1_0.75_224 --device stm32h743 -o build/mbv1\n"
                    "  tvm-mpq compile mobilenet_v1_0.25_32 --flash 120kB --ram 10kB "
                    "--calib fashion-mnist -o build/fm\n")
    add_model_args(p)
    p.add_argument("--board", default="qemu_m7", help="qemu_m7 (default), nucleo_h743zi, host")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR")
    add_budget_args(p)
    p.add_argument("--calib", default="synthetic",
                   help="float models: calibration data: synthetic (default, with a warning), "
                        "fashion-mnist, or X.npy")
    p.add_argument("--num-samples", type=int, default=256)
    p.add_argument("--tuning-records", metavar="RECORDS",
                   help="kernel schedules from `tvm-mpq tune` (layers not in it keep the "
                        "default schedule)")
    p.add_argument("--no-build", action="store_true", help="only write the project")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..codegen.project import write_project
    from ..flow import layer_info, prepare
    from ..frontend.loader import load_model
    from ..passes.pipeline import convert
    from ..target.boards import get_board

    import time

    t0 = time.time()

    def step(what: str) -> None:      # progress on stdout: stderr stays for errors
        if not args.quiet:
            out(f"[{time.time() - t0:5.1f} s] {what}")

    board = get_board(args.board)
    records = None
    if args.tuning_records:
        from ..tune.records import Records

        records = Records.load(args.tuning_records)
    model = load_model(args.model, num_classes=args.num_classes, in_channels=args.in_channels,
                       input_shape=args.input_shape)
    budget = budget_from_args(args)
    step("plan and quantize" if budget else "read the quantized model")
    prep = prepare(model, args.model, budget, args.calib, args.num_samples)
    step("convert to the integer-only graph (Relax passes)")
    im = convert(prep.qdq, origin=args.model)
    name = prep.graph.name or Path(args.model).stem
    step("generate C (kernels, memory plan, model.c)")
    extra = {"budget": None if budget is None else {
        "flash_bytes": budget.flash_bytes, "ram_bytes": budget.ram_bytes,
        "scheme": budget.scheme}}
    if prep.plan_json and budget is None and "flash_bytes" in prep.plan_json:
        extra["budget"] = {"flash_bytes": prep.plan_json["flash_bytes"],
                           "ram_bytes": prep.plan_json["ram_bytes"],
                           "scheme": prep.plan_json.get("scheme")}
    ram = (extra["budget"] or {}).get("ram_bytes")
    gen = fit_arena(im.mod, name, layer_info(prep.graph), records, ram)
    if records is not None:
        extra["tuning"] = tuning_metadata(args.tuning_records, records, gen)
    if prep.plan_json:
        extra["plan_prediction"] = {"ro_bytes": prep.plan_json.get("ro_bytes"),
                                    "rw_bytes": prep.plan_json.get("rw_bytes")}
    meta = write_project(args.output, gen, board=board.name, model_name=name,
                         qdq_bytes=prep.qdq.SerializeToString(), plan_json=prep.plan_json,
                         extra=extra)
    out(f"wrote {args.output}: {len(gen.layers)} layers, {len(gen.files)} C files, arena "
        f"{gen.memory.arena_bytes:,} B, weights+parameters {gen.const_bytes:,} B")
    if args.no_build:
        return 0
    step(f"build the firmware for {board.name} (CMake)")
    report = build_and_report(Path(args.output), board.name, meta)
    out(report)
    return 0


def build_and_report(outdir: Path, board: str, meta: dict, profile: bool = False) -> str:
    from ..target.boards import get_board
    from ..target.build import build_firmware, memory_report

    exe = build_firmware(outdir, board, outdir / "build" / board, profile=profile)
    if get_board(board).toolchain == "host-cc":
        return f"built {exe}"
    mem = memory_report(exe)
    b = meta.get("budget") or {}
    pred = meta.get("plan_prediction") or {}
    rows = [["FLASH", mem["flash_bytes"], pred.get("ro_bytes") or "-",
             meta["memory"]["const_bytes"], b.get("flash_bytes") or "-"],
            ["RAM", mem["ram_bytes"], pred.get("rw_bytes") or "-",
             meta["memory"]["arena_bytes"], b.get("ram_bytes") or "-"]]
    table = format_table(["memory", "firmware (size)", "plan model", "generated model",
                          "budget"], rows, align="lrrrr")
    return (f"built {exe}\n{table}\n(firmware RAM = the arena + the "
            f"{mem.get('reserved_bytes', 0):,} B stack+heap reserve + runtime data; 'generated model' is the "
            "const data and the static arena)")


def tuning_metadata(path: str, records, gen) -> dict:
    """What the build took from the tuning records (for metadata.json and the report)."""
    import hashlib

    tuned = sorted({la["name"] for la in gen.layers if la.get("schedule")})
    return {"records": Path(path).name,
            "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
            "tuned_layers": tuned}


def fit_arena(mod, name: str, info, records, ram: int | None):
    """generate_model with the tuned (or default) schedules; when their kernels' scratch
    (im2col columns, rings of widened input rows) pushes the arena over the RAM budget, the same with
    leaner schedules (kernel_dsp.lean_schedule, levels 1 then 2) for every layer whose
    scratch is larger than the lean one's, as far as that brings the arena down."""
    from ..codegen import kernel_dsp
    from ..codegen.aot import generate_model

    chosen = records.schedule_for if records is not None else (lambda spec: None)
    gen = generate_model(mod, name, info, schedules=chosen)
    if not ram or gen.memory.arena_bytes <= ram:
        return gen
    first = gen
    for level in (1, 2):
        def pick(spec, level=level):
            sched = chosen(spec)
            lean = kernel_dsp.lean_schedule(spec, level)
            if lean is not None and kernel_dsp.scratch_bytes(spec.with_schedule(lean)) < \
                    kernel_dsp.scratch_bytes(spec.with_schedule(sched or {})):
                return lean
            return sched
        alt = generate_model(mod, name, info, schedules=pick)
        if alt.memory.arena_bytes < gen.memory.arena_bytes:
            gen = alt
        if gen.memory.arena_bytes <= ram:
            break
    if gen is not first:
        what = "tuned" if records is not None else "default"
        log.warning(f"the {what} kernels' scratch needs a {first.memory.arena_bytes:,} B "
                    f"arena, over the {ram:,} B RAM budget: leaner kernels (less scratch, "
                    f"more instructions) where it helps: {gen.memory.arena_bytes:,} B")
    return gen
