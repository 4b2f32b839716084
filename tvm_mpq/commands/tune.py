"""`tvm-mpq tune`: search each layer's kernel schedule on the target (MetaSchedule + XGBoost)."""

from __future__ import annotations

from pathlib import Path

from ..errors import MpqError
from ..report.table import format_table
from .common import add_model_args, out, verb_parser
from .compile import add_budget_args, budget_from_args


def register(sub) -> None:
    p = verb_parser(
        sub, "tune",
        "tune the kernel schedules of a model's layers on the target (exact instruction "
        "counts on QEMU, or boards behind a TVM RPC tracker) and write tuning records",
        "  tvm-mpq tune qmodel.onnx --board qemu_m7 --trials 10 -o qmodel.tune.json\n"
        "  tvm-mpq compile qmodel.onnx --tuning-records qmodel.tune.json -o build/q\n"
        "  tvm-mpq tune mobilenet_v1_0.75_224 --device stm32h743 --trials 8 "
        "--layers 'block1*' -o m.json\n"
        "  tvm-mpq tune build/q --trials 10 -o q.json        # a compile OUTDIR\n"
        "  tvm-mpq tune q.onnx -o q.json --rpc-tracker 10.0.0.5:9190 --rpc-key qemu_m7\n"
        "\n"
        "Identical layers are tuned once. Every measurement is logged as it completes in\n"
        "RECORDS.work/: run the same command again after an interruption and it resumes\n"
        "without measuring anything twice. The records format is in docs/tuning.md.\n")
    add_model_args(p)
    p.add_argument("--board", default="qemu_m7", choices=["qemu_m7"],
                   help="measurement target (qemu_m7: exact executed instructions)")
    p.add_argument("--trials", type=int, default=10,
                   help="measurements per distinct layer, default included (default 10)")
    p.add_argument("-o", "--output", required=True, metavar="RECORDS",
                   help="tuning records (JSON) to write; an existing file is extended")
    p.add_argument("--layers", nargs="+", metavar="NAME",
                   help="only these layers (names or glob patterns, as `tvm-mpq inspect` "
                        "lists them)")
    p.add_argument("--rpc-tracker", metavar="HOST:PORT",
                   help="measure on the servers registered with this TVM RPC tracker "
                        "(start them with `tvm-mpq rpc-server`)")
    p.add_argument("--rpc-key", metavar="KEY", help="the servers' device key")
    p.add_argument("--seed", type=int, default=0)
    add_budget_args(p)
    p.add_argument("--calib", default="synthetic",
                   help="float models: calibration data (synthetic, fashion-mnist, X.npy)")
    p.add_argument("--num-samples", type=int, default=256)
    p.set_defaults(func=run)


def parse_tracker(text: str | None, key: str | None):
    if text is None and key is None:
        return None
    if text is None or not key:
        raise MpqError("give both --rpc-tracker HOST:PORT and --rpc-key KEY")
    from ..tune.rpc import parse_host_port

    return (*parse_host_port(text), key)


def model_layers(args) -> list:
    """(layer name, kernel spec) of MODEL (a model file, zoo name or compile OUTDIR)."""
    from ..codegen.aot import layer_specs
    from ..flow import prepare
    from ..frontend.loader import load_model
    from ..passes.pipeline import convert

    src = args.model
    if Path(src).is_dir():
        qdq = Path(src) / "model.qdq.onnx"
        if not qdq.is_file():
            raise MpqError(f"{src} is not a `tvm-mpq compile` output directory "
                           "(no model.qdq.onnx)")
        src = str(qdq)
    model = load_model(src, num_classes=args.num_classes, in_channels=args.in_channels,
                       input_shape=getattr(args, "input_shape", None))
    prep = prepare(model, src, budget_from_args(args), args.calib, args.num_samples)
    return layer_specs(convert(prep.qdq, origin=src).mod)


def run(args) -> int:
    from ..tune.tuner import summary, tune_layers

    rpc = parse_tracker(args.rpc_tracker, args.rpc_key)
    layers = model_layers(args)
    progress = (lambda s: None) if args.quiet else out
    records = tune_layers(layers, trials=args.trials, records_path=args.output,
                          board=args.board, rpc=rpc, only=args.layers, seed=args.seed,
                          progress=progress)
    rows, tot_d, tot_b = summary(records, layers)
    out(format_table(["layer", "kind", "bits", "default insn", "tuned insn", "change",
                      "schedule"], rows, align="lllrrrl"))
    if tot_d:
        out(f"total over the {len(rows)} tuned layers: {tot_d:,} -> {tot_b:,} instructions "
            f"({tot_b / tot_d - 1:+.1%}); records: {args.output}")
    return 0
