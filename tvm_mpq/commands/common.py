"""Arguments and helpers shared by the CLI verbs."""

from __future__ import annotations

import argparse
import logging
import sys

log = logging.getLogger("tvm_mpq")


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL",
                   help="an .onnx file or a zoo name such as mobilenet_v1_0.75_224")
    p.add_argument("--num-classes", type=int, default=None,
                   help="zoo models only: classifier outputs (default 1000; 10 for 28/32 px)")
    p.add_argument("--in-channels", type=int, default=None,
                   help="zoo models only: image channels (default 3; 1 for 28/32 px)")
    p.add_argument("--input-shape", metavar="NAME:D0,D1,...", default=None,
                   help="model files: the input's shape (e.g. input:1,49,10,1); a dynamic "
                        "batch dimension is otherwise taken as 1")


def load_graph(args):
    """MODEL (file or zoo name) -> (validated onnx model, LayerGraph)."""
    from ..frontend.graph import build_layer_graph
    from ..frontend.loader import load_model, validate

    model = load_model(args.model, num_classes=args.num_classes, in_channels=args.in_channels,
                       input_shape=args.input_shape)
    if not args.model.endswith(".onnx"):
        model = validate(model, origin=args.model)
    return model, build_layer_graph(model)


def verb_parser(sub, name: str, help_: str, examples: str):
    p = sub.add_parser(name, help=help_, description=help_, epilog="examples:\n" + examples,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    # also after the verb (`tvm-mpq train ... -v`); SUPPRESS keeps the value given before it
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="more detail on stderr")
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="only results and errors")
    return p


def out(text: str = "") -> None:
    print(text, file=sys.stdout)
