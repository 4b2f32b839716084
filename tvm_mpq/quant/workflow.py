"""Steps shared by `tvm-mpq train` and `tvm-mpq quantize`: model + plan in, QDQ file out."""

from __future__ import annotations

import os

import onnx

from ..data.fashion_mnist import NUM_CLASSES, load_dataset
from ..errors import MpqError
from ..fsutil import write_bytes_atomic
from .export_qdq import export_qdq
from .qplan import layer_configs, read_plan
from .torch_model import TorchNet, from_onnx, to_float_onnx
from .train import ImageData


def load_net_and_plan(model: onnx.ModelProto, graph, plan: str | dict) -> tuple[TorchNet, dict]:
    """The float PyTorch twin of `model` and the plan (a file path or a plan dict), checked
    against each other."""
    net = from_onnx(model, graph)
    if isinstance(plan, dict):
        from ..memory.plan import plan_from_json

        plan = plan_from_json(plan, graph).to_json()
    else:
        plan = read_plan(plan, graph)
    layer_configs(plan, net)            # PlanError on any mismatch, before any work
    return net, plan


def load_float_weights(net: TorchNet, path: str) -> None:
    """Replace `net`'s weights by those of a float ONNX file of the same architecture."""
    from ..frontend.loader import load_onnx_file

    other = from_onnx(load_onnx_file(path))
    mine, theirs = net.state_dict(), other.state_dict()
    if mine.keys() != theirs.keys() or any(mine[k].shape != theirs[k].shape for k in mine):
        raise MpqError(f"float checkpoint '{path}' does not have the architecture of model "
                       f"'{net.name}'")
    net.load_state_dict(theirs)


def check_dataset_fit(net: TorchNet, name: str) -> None:
    c, h, w = net.input_shape
    if net.num_classes != NUM_CLASSES:
        raise MpqError(f"model '{net.name}' has {net.num_classes} classes; {name} has "
                       f"{NUM_CLASSES}", hint="use a 28/32-px zoo model or --num-classes 10")
    if c not in (1, 3) or h != w or h < 28 or (h - 28) % 2:
        raise MpqError(f"model '{net.name}' takes {c}x{h}x{w} inputs; {name} images are 1x28x28 "
                       "(models of 28, 30, 32, ... px with 1 or 3 channels fit)")


def dataset(net: TorchNet, name: str, split: str, limit: int | None = None) -> ImageData:
    check_dataset_fit(net, name)
    if limit is not None and limit <= 0:
        raise MpqError(f"--limit-{split} must be positive, got {limit}")
    images, labels = load_dataset(name, split)
    return ImageData(images, labels, net.input_shape, limit)


def write_qdq(qnet: TorchNet, path: str) -> onnx.ModelProto:
    model = export_qdq(qnet)
    write_bytes_atomic(path, model.SerializeToString())
    return model


def write_float(net: TorchNet, path: str) -> None:
    write_bytes_atomic(path, to_float_onnx(net).SerializeToString())


def bits_string(plan: dict) -> str:
    from .. import ops

    letters = ops.letters()
    return " ".join(f"{letters.get(e['kind'], '?')}{e['in_bits']}{e['out_bits']}{e['w_bits']}"
                    for e in plan["layers"] if e.get("kind") in letters)


def describe_output(model: onnx.ModelProto, path: str) -> str:
    size = os.path.getsize(path)
    return (f"wrote {path} (QDQ ONNX, opset {model.opset_import[0].version}, "
            f"{size / 1024:.1f} KiB)")
