"""`tvm-mpq zoo`: list the model zoo or export one of its models as ONNX."""

from __future__ import annotations


from ..fsutil import write_bytes_atomic
from ..models.zoo import zoo_model, zoo_names
from .common import out, verb_parser


def register(sub) -> None:
    p = verb_parser(sub, "zoo", "list the built-in models, or export one as a float ONNX file",
                    "  tvm-mpq zoo\n"
                    "  tvm-mpq zoo mobilenet_v1_0.5_160 -o mbv1.onnx\n"
                    "  tvm-mpq zoo mobilenet_v1_0.25_32 --num-classes 10 -o fmnist.onnx\n")
    p.add_argument("name", nargs="?", help="zoo model to export")
    p.add_argument("-o", "--output", help="ONNX file to write")
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--in-channels", type=int, default=None)
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic weights")
    p.set_defaults(func=run)


def run(args) -> int:
    if not args.name:
        out("MobileNetV1 (TF-slim layout, synthetic deterministic weights):")
        for name in zoo_names():
            out(f"  {name}")
        return 0
    model = zoo_model(args.name, num_classes=args.num_classes, in_channels=args.in_channels,
                      seed=args.seed)
    if not args.output:
        from ..errors import MpqError

        raise MpqError("give -o FILE.onnx to export a zoo model")
    write_bytes_atomic(args.output, model.SerializeToString())
    out(f"wrote {args.output} ({len(model.graph.node)} nodes, opset "
        f"{model.opset_import[0].version})")
    return 0
