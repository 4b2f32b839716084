"""`tvm-mpq run`: run an integer model on the host or on the (emulated) target."""

from __future__ import annotations

import numpy as np

from ..errors import MpqError
from ..fsutil import write_bytes_atomic
from .common import out, verb_parser


def register(sub) -> None:
    p = verb_parser(sub, "run", "run a quantized model: on the host (TVM) or a compiled build "
                    "on its board",
                    "  tvm-mpq run qmodel.onnx --board host --input x.npy --output y.npy\n"
                    "  tvm-mpq run qmodel.onnx --board host --input random --reference\n")
    p.add_argument("model", metavar="MODEL_OR_BUILD",
                   help="a QDQ .onnx model, or an output directory of `tvm-mpq compile`")
    p.add_argument("--board", default="host", help="host (default)")
    p.add_argument("--input", default="random",
                   help="X.npy (float NCHW, or already-quantized integers) or 'random'")
    p.add_argument("--output", metavar="Y.npy", help="write the (dequantized) output here")
    p.add_argument("--reference", action="store_true",
                   help="also run the numpy golden model and check it is bit-identical")
    p.add_argument("--seed", type=int, default=0, help="seed of --input random")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..frontend.loader import load_onnx_file
    from ..passes.pipeline import convert

    if args.board != "host":
        raise MpqError(f"board '{args.board}' needs a compiled build directory "
                       "(tvm-mpq compile MODEL --board ... -o OUTDIR)")
    if not args.model.endswith(".onnx"):
        raise MpqError(f"'{args.model}' is not an .onnx model")
    from .. import tvm_adapter as ta
    from ..tensor_io import load_input

    im = convert(load_onnx_file(args.model), origin=args.model)
    q_dtype = str(im.mod["main"].params[0].ty.dtype)
    x = load_input(args.input, im.graph.input_shape, q_dtype, im.quantize_input, args.seed)
    y = np.asarray(ta.build_relax_host(im.mod)(x))
    _report(y, im.dequantize_output(y))
    if args.reference:
        from ..reference.interpret import run_reference

        ref = run_reference(im.mod, x)
        if not np.array_equal(ref, y):
            n = int(np.sum(ref != y))
            print(f"MISMATCH: host build differs from the golden model in {n} elements")
            return 1
        out("golden model: bit-identical")
    if args.output:
        import io

        buf = io.BytesIO()
        np.save(buf, im.dequantize_output(y).astype(np.float32))
        write_bytes_atomic(args.output, buf.getvalue())
    return 0


def _report(y_int: np.ndarray, y: np.ndarray) -> None:
    flat = y.ravel()
    top = np.argsort(-flat, kind="stable")[:5]
    out(f"output {list(y_int.shape)} {y_int.dtype}: top-5 " +
        ", ".join(f"{int(i)} ({flat[i]:.4g})" for i in top))
