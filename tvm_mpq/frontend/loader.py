"""Loading and validating ONNX models: a path to an `.onnx` file or a zoo name.

Everything that can go wrong with a user's file ends in a `ModelError` that names
the file (and the node, when one is at fault).
"""

from __future__ import annotations

import os

import onnx
from google.protobuf.message import DecodeError

from ..errors import ModelError
from ..models import zoo
from .cleanup import parse_input_shape, prepare_model
from ..ops.conv2d_geometry import normalize_convs


def load_model(spec: str, *, num_classes: int | None = None,
               in_channels: int | None = None, input_shape: str | None = None
               ) -> onnx.ModelProto:
    """Load MODEL as the CLI means it: an `.onnx` path, or a zoo name. `input_shape`:
    the `--input-shape NAME:D0,D1,...` text (files only; see frontend.cleanup)."""
    if spec.endswith(".onnx") or os.sep in spec or os.path.exists(spec):
        if num_classes is not None or in_channels is not None:
            raise ModelError("--num-classes/--in-channels apply to zoo models only, "
                             f"not to the file '{spec}'")
        return load_onnx_file(spec, input_shape=input_shape)
    if input_shape:
        raise ModelError(f"--input-shape applies to model files, not to the zoo model '{spec}'")
    return zoo.zoo_model(spec, num_classes=num_classes, in_channels=in_channels)


def load_onnx_file(path: str, input_shape: str | None = None) -> onnx.ModelProto:
    if not os.path.exists(path):
        raise ModelError(f"model file '{path}' not found")
    if os.path.isdir(path):
        raise ModelError(f"'{path}' is a directory, not an ONNX model file")
    with open(path, "rb") as f:
        data = f.read()
    return load_onnx_bytes(data, path, input_shape=input_shape)


def load_onnx_bytes(data: bytes, path: str = "model", input_shape: str | None = None
                    ) -> onnx.ModelProto:
    """Parse, prepare (frontend.cleanup: fixed input shape, graph clean-up, NHWC input) and
    validate the bytes of an .onnx file (`path` names it in errors)."""
    if not data:
        raise ModelError(f"'{path}' is empty, not an ONNX model")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise ModelError(f"'{path}' is not a valid ONNX file (truncated or another format): "
                         f"{_short(e)}") from None
    if not model.HasField("graph") or model.ir_version == 0:
        raise ModelError(f"'{path}' is not a valid ONNX model (no graph or IR version)")
    if any(t.HasField("data_location") and t.data_location == onnx.TensorProto.EXTERNAL
           for t in model.graph.initializer):
        raise ModelError(f"'{path}' keeps weights in external data files; save it as one file "
                         "(onnx.save(model, path, save_as_external_data=False))")
    try:
        onnx.checker.check_model(model)
    except Exception as e:  # noqa: BLE001 - the checker raises many types
        raise ModelError(f"{path}: ONNX checker rejects the model: {_short(e)}") from None
    model = prepare_model(model, path, parse_input_shape(input_shape))
    return validate(model, origin=path)


def validate(model: onnx.ModelProto, origin: str = "model") -> onnx.ModelProto:
    """Check the structure, input shapes and run ONNX shape inference (strict); then every
    Conv gets explicit pads (auto_pad resolved, a zero Pad before it folded in:
    ops.conv2d_geometry.normalize_convs)."""
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, Exception) as e:  # noqa: BLE001 - checker raises many
        raise ModelError(f"{origin}: ONNX checker rejects the model: {_short(e)}") from None
    g = model.graph
    if len(g.node) == 0:
        raise ModelError(f"{origin}: the graph is empty (no nodes)")
    init_names = {t.name for t in g.initializer}
    real_inputs = [i for i in g.input if i.name not in init_names]
    if len(real_inputs) != 1:
        raise ModelError(f"{origin}: expected exactly one input tensor, found "
                         f"{len(real_inputs)} ({', '.join(i.name for i in real_inputs)})")
    if len(g.output) != 1:
        raise ModelError(f"{origin}: expected exactly one output tensor, found {len(g.output)}")
    for vi in real_inputs:
        dims = vi.type.tensor_type.shape.dim
        if not vi.type.tensor_type.HasField("shape") or len(dims) == 0:
            raise ModelError(f"{origin}: input '{vi.name}' has no static shape",
                             hint="export the model with a fixed input shape")
        shape = []
        for d in dims:
            if d.HasField("dim_value") and d.dim_value > 0:
                shape.append(d.dim_value)
            elif d.HasField("dim_value") and d.dim_value == 0:
                raise ModelError(f"{origin}: input '{vi.name}' has a zero-sized dimension")
            else:
                sym = d.dim_param or "?"
                raise ModelError(f"{origin}: input '{vi.name}' has a dynamic dimension '{sym}'",
                                 hint="export the model with a fixed input shape, batch 1")
        if shape[0] != 1:
            raise ModelError(f"{origin}: input '{vi.name}' has batch {shape[0]}; "
                             "microcontroller inference uses batch 1")
    try:
        model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True,
                                                  data_prop=True)
    except Exception as e:  # noqa: BLE001 - onnx raises InferenceError and others
        raise ModelError(f"{origin}: shape inference failed: {_short(e)}") from None
    return normalize_convs(model)


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:300] + ("..." if len(text) > 300 else "")
