"""The conversion pipeline, in order: QDQ ONNX -> integer-only Relax module.

    1. frontend.loader.validate        ONNX checks and shape inference
    2. frontend.graph.build_layer_graph the layer view (names, kinds; rejects what the
                                         flow cannot compile, naming the node)
    3. frontend.qdq.prepare_qdq         sub-byte tensors into 8-bit containers, Clip into
                                         Max/Min, QdqInfo with every tensor's bit width
    4. tvm.relax.frontend.onnx          TVM's ONNX importer (fake-quant float Relax)
    5. AnnotatePrecision                mpq.precision(bits, signed) on every quantized tensor
    6. LegalizeRequantizeToICN          integer mpq.* ops with ICN requantization, NHWC
    7. CheckIntegerOnly                 no float op or tensor remains
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from .. import tvm_adapter as ta
from ..errors import ModelError
from ..frontend.graph import LayerGraph, build_layer_graph
from ..frontend.loader import validate
from ..frontend.qdq import is_qdq, prepare_qdq
from .annotate_precision import annotate_precision
from .check_integer import check_integer_only
from .legalize_icn import legalize_requantize_to_icn


@dataclass
class IntegerModel:
    """The converted model: the integer Relax module and what the later steps need."""
    mod: object                 # IRModule with an integer-only `main`
    graph: LayerGraph           # the ONNX layer view
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """Float NCHW input -> the integer model's NHWC input (as QuantizeLinear does)."""
        main = self.mod["main"]
        dtype = str(main.params[0].ty.dtype)
        info = np.iinfo(dtype)
        q = np.rint(np.asarray(x, np.float64) / self.input_scale) + self.input_zero_point
        q = np.clip(q, info.min, info.max).astype(dtype)
        return np.transpose(q, (0, 2, 3, 1)) if q.ndim == 4 else q

    def dequantize_output(self, y: np.ndarray) -> np.ndarray:
        return (np.asarray(y, np.float64) - self.output_zero_point) * self.output_scale


def convert(model: onnx.ModelProto, origin: str = "model") -> IntegerModel:
    model = validate(model, origin)
    graph = build_layer_graph(model)
    if not is_qdq(model):
        raise ModelError(f"{origin} is a float model; quantize it first (tvm-mpq quantize or "
                         "tvm-mpq train), or give a QDQ ONNX model")
    model8, info = prepare_qdq(model)
    arrays = {t.name: numpy_helper.to_array(t) for t in model8.graph.initializer}
    try:
        mod = ta.onnx_to_relax(model8)
    except Exception as e:  # noqa: BLE001 - the frontend raises many types on odd models
        # the model passed the flow's own checks: say what TVM refused, in one line
        text = " ".join(str(e).split())
        raise ModelError(f"{origin}: TVM's ONNX frontend cannot import the model: "
                         f"{type(e).__name__}: {text[:300]}") from None
    mod = annotate_precision(mod, info, arrays)
    mod = legalize_requantize_to_icn(mod, [layer.name for layer in graph.layers])
    check_integer_only(mod)
    f = mod["main"]
    return IntegerModel(mod, graph, float(f.attrs["mpq.input_scale"]),
                        int(f.attrs["mpq.input_zero_point"]), float(f.attrs["mpq.output_scale"]),
                        int(f.attrs["mpq.output_zero_point"]))
