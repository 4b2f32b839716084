"""`tvm-mpq inspect MODEL`: the per-layer view of a model."""

from __future__ import annotations

from ..fsutil import write_json_atomic
from ..report.table import format_table, human_bytes
from .common import add_model_args, load_graph, out, verb_parser


def register(sub) -> None:
    p = verb_parser(sub, "inspect", "show a model's layers: kinds, shapes, parameters, MACs",
                    "  tvm-mpq inspect mobilenet_v1_0.75_224\n"
                    "  tvm-mpq inspect my_model.onnx --json layers.json\n"
                    "  tvm-mpq inspect mobilenet_v1_0.25_32 --num-classes 10\n")
    add_model_args(p)
    p.add_argument("--json", metavar="FILE", help="also write the layer view as JSON")
    p.add_argument("--relax", action="store_true",
                   help="also import the model into TVM Relax and print the module")
    p.set_defaults(func=run)


def _shape(s) -> str:
    return "x".join(map(str, s[1:]))


def run(args) -> int:
    model, graph = load_graph(args)
    rows = []
    for i, layer in enumerate(graph.layers):
        act = layer.n_in * len(layer.inputs) + layer.n_out
        rows.append([i, layer.name, layer.kind, _shape(layer.in_shape), _shape(layer.out_shape),
                     layer.n_params, layer.macs, act])
    out(f"model {graph.name}: input {graph.input_name} {list(graph.input_shape)}, "
        f"{len(graph.layers)} layers")
    out(format_table(["#", "layer", "kind", "input (CHW)", "output (CHW)", "params", "MACs",
                      "act bytes@8b"], rows, align="rllllrrr"))
    peak = max(r[-1] for r in rows)
    out(f"total: {graph.total_params:,} parameters ({human_bytes(graph.total_params)} at 8 bits),"
        f" {graph.total_macs:,} MACs, largest layer activations {human_bytes(peak)} at 8 bits")
    if args.json:
        write_json_atomic(args.json, graph.to_json())
    if args.relax:
        from ..tvm_adapter import onnx_to_relax

        out(onnx_to_relax(model).script(show_meta=False))
    return 0
