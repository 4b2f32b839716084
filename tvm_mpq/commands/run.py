"""`tvm-mpq run`: run an integer model on the host or on the (emulated) target."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..errors import MpqError
from ..fsutil import write_bytes_atomic
from ..report.table import format_table
from .common import out, verb_parser


def register(sub) -> None:
    p = verb_parser(sub, "run", "run a quantized model: a QDQ .onnx on the host (TVM), or a "
                    "compiled build directory on its board (QEMU Cortex-M7 or host)",
                    "  tvm-mpq run qmodel.onnx --board host --input x.npy --output y.npy\n"
                    "  tvm-mpq run build/m --board qemu_m7 --input random --profile\n"
                    "  tvm-mpq run build/m --board qemu_m7 --input x.npy --check-host\n")
    p.add_argument("model", metavar="MODEL_OR_BUILD",
                   help="a QDQ .onnx model, or an output directory of `tvm-mpq compile`")
    p.add_argument("--board", default=None,
                   help="host or qemu_m7 (default: host for .onnx, the build's board)")
    p.add_argument("--input", default="random",
                   help="X.npy (float NCHW, or already-quantized integers) or 'random'")
    p.add_argument("--output", metavar="Y.npy", help="write the (dequantized) output here")
    p.add_argument("--reference", action="store_true",
                   help="also run the numpy golden model and check it is bit-identical")
    p.add_argument("--check-host", action="store_true",
                   help="build directories: also run the host build and compare bytes")
    p.add_argument("--profile", action="store_true",
                   help="build directories on qemu_m7: executed instructions per layer")
    p.add_argument("--timeout", type=float, default=120, help="seconds (default 120)")
    p.add_argument("--seed", type=int, default=0, help="seed of --input random")
    p.set_defaults(func=run)


def run(args) -> int:
    if not 0 < args.timeout < float("inf"):        # also NaN
        raise MpqError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    path = Path(args.model)
    if path.is_dir():
        return _run_build(args, path)
    if not path.exists():
        raise MpqError(f"'{args.model}' not found (give a QDQ .onnx model or a build "
                       "directory of tvm-mpq compile)")
    if not args.model.endswith(".onnx"):
        raise MpqError(f"'{args.model}' is neither a QDQ .onnx model nor a build directory")
    return _run_onnx(args)


def _run_onnx(args) -> int:
    from .. import tvm_adapter as ta
    from ..frontend.loader import load_onnx_file
    from ..passes.pipeline import convert
    from ..tensor_io import load_input

    if args.board not in (None, "host"):
        raise MpqError(f"board '{args.board}' needs a compiled build directory "
                       "(tvm-mpq compile MODEL --board ... -o OUTDIR)")
    im = convert(load_onnx_file(args.model), origin=args.model)
    q_dtype = str(im.mod["main"].params[0].ty.dtype)
    x = load_input(args.input, im.graph.input_shape, q_dtype, im.quantize_input, args.seed)
    y = np.asarray(ta.build_relax_host(im.mod)(x))
    _report(y, im.dequantize_output(y))
    rc = 0
    if args.reference:
        from ..reference.interpret import run_reference

        rc = _compare("golden model", run_reference(im.mod, x), y)
    _save(args.output, im.dequantize_output(y))
    return rc


def _run_build(args, outdir: Path) -> int:
    from ..codegen.project import read_metadata
    from ..evaluate import unpack_outputs
    from ..target import build_firmware, run_host, run_qemu
    from ..target.boards import get_board
    from ..tensor_io import load_input

    meta = read_metadata(outdir)
    board = get_board(args.board or meta["board"])
    if not board.can_run:
        raise MpqError(f"board '{board.name}' cannot run here (no hardware); use qemu_m7 or "
                       "host, or flash the firmware (see the README)")
    from ..evaluate import float_input_shape, pack_inputs, quantize_images

    q_dtype = "int8" if meta["input"]["signed"] else "uint8"
    x = load_input(args.input, float_input_shape(meta), q_dtype,
                   lambda xf: quantize_images(meta, xf), args.seed)
    x_bytes = pack_inputs(meta, x)
    profile = bool(args.profile) and board.name != "host"
    exe = build_firmware(outdir, board.name, outdir / "build" / (board.name +
                                                                 ("-profile" if profile else "")),
                         profile=profile)
    if board.name == "host":
        res = run_host(exe, x_bytes, timeout_s=args.timeout)
    else:
        res = run_qemu(exe, x_bytes, timeout_s=args.timeout, count_instructions=profile)
    outp = meta["output"]
    y = unpack_outputs(meta, res.output_bytes, 1)[0]
    deq = (y.astype(np.float64) - outp["zero_point"]) * outp["scale"]
    _report(y, deq)
    rc = 0
    if profile:
        _print_profile(res, meta, outdir)
    if args.check_host and board.name != "host":
        hexe = build_firmware(outdir, "host", outdir / "build" / "host")
        hres = run_host(hexe, x_bytes, timeout_s=args.timeout)
        same = hres.output_bytes == res.output_bytes
        out(f"host build: {'byte-identical' if same else 'DIFFERENT'} output")
        rc |= 0 if same else 1
    if args.reference:
        from ..frontend.loader import load_onnx_file
        from ..passes.pipeline import convert
        from ..reference.interpret import run_reference

        im = convert(load_onnx_file(str(outdir / "model.qdq.onnx")))
        rc |= _compare("golden model", run_reference(im.mod, x).reshape(y.shape), y)
    _save(args.output, deq)
    return rc


def _print_profile(res, meta, outdir: Path) -> None:
    macs = {layer["name"]: int(layer.get("macs", 0)) for layer in meta["layers"]}
    rows = []
    for r in res.profile:
        m = macs.get(r.name, 0)
        ins = r.instructions if r.instructions is not None else r.counter * 40
        rows.append([r.layer, r.name, m, ins, round(ins / m, 2) if m else "-"])
    total = res.instructions_total or sum(r[3] for r in rows)
    from ..fsutil import write_json_atomic

    write_json_atomic(outdir / "profile.json", {
        "unit": "instructions", "total_instructions": int(total),
        "layers": [{"index": r[0], "name": r[1], "instructions": int(r[3])} for r in rows]})
    out(format_table(["#", "layer", "MACs", "instructions", "instr/MAC"], rows,
                     align="rlrrr"))
    all_macs = sum(macs.values())
    out(f"total: {total:,} executed instructions for {all_macs:,} MACs "
        f"({total / max(1, all_macs):.2f} instructions/MAC; instructions, not cycles)")


def _compare(what: str, ref: np.ndarray, got: np.ndarray) -> int:
    if np.array_equal(np.asarray(ref).ravel(), np.asarray(got).ravel()):
        out(f"{what}: bit-identical")
        return 0
    n = int(np.sum(np.asarray(ref).ravel() != np.asarray(got).ravel()))
    out(f"MISMATCH: {what} differs in {n} elements")
    return 1


def _save(path, y) -> None:
    if path:
        buf = io.BytesIO()
        np.save(buf, np.asarray(y, np.float32))
        write_bytes_atomic(path, buf.getvalue())


def _report(y_int: np.ndarray, y: np.ndarray) -> None:
    flat = np.asarray(y).ravel()
    top = np.argsort(-flat, kind="stable")[:5]
    out(f"output {list(y_int.shape)} {y_int.dtype}: top-5 " +
        ", ".join(f"{int(i)} ({flat[i]:.4g})" for i in top))
