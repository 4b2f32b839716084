"""Per-operator faces of the PyTorch training twin: one file per operator family.

    conv2d.py    conv, depthwise, pointwise   Conv + BN? + Relu | Clip(0, M)
    linear.py    linear                       Gemm / MatMul (+ Relu)
    avg_pool.py  pool                         GlobalAveragePool / AveragePool (no padding)
    add.py       add                          residual Add (+ Relu)
    max_pool.py  maxpool                      MaxPool

Each file holds everything the quant side knows about its operator: the nn.Module (float
and fake-quant forward), how it is built from the layer's ONNX nodes, how the plan's
quantizers are attached, its calibration, its LayerQParams and its QDQ / float ONNX
export. The interface is `base.Face`:

    build(layer, ctx: BuildCtx) -> module           (a base.LayerModule)
    configure(module, q: LayerQ | None, ctx: QuantCtx)
    calibrate(module, inputs, ctx: CalibCtx) -> fake-quantized output
    qparams(module, in_quants) -> LayerQParams | None
    export(module, params, ctx: ExportCtx)          QDQ nodes and initializers
    export_float(module, ctx: FloatCtx)             float nodes and initializers

and every module has `name`, `kind`, `inputs`, `output` (LayerGraph tensor ids),
`has_weights`, `out_quant()` (the quantizer its output tensor carries), `freeze_bn()`.
The generic code (torch_model, fake_quant.configure, calibrate, qparams.layer_qparams,
export_qdq) loops over the layers and asks `face_of(module)` / `face_for(kind)`.
"""

from __future__ import annotations

from ...errors import UnsupportedOpError
from .add import AddFace
from .avg_pool import AvgPoolFace
from .base import Face
from .conv2d import ConvFace
from .linear import LinearFace
from .max_pool import MaxPoolFace

FACES: dict[str, Face] = {}
for _face in (ConvFace(), LinearFace(), AvgPoolFace(), AddFace(), MaxPoolFace()):
    for _kind in _face.kinds:
        FACES[_kind] = _face


def face_for(kind: str, node: str = "?") -> Face:
    """The face of a layer kind; UnsupportedOpError for a kind the twin does not know."""
    if kind not in FACES:
        raise UnsupportedOpError(node, kind, "no PyTorch twin for this layer kind "
                                 f"(known: {', '.join(sorted(FACES))})")
    return FACES[kind]


def face_of(module) -> Face:
    """The face of a twin module (its `kind`)."""
    return FACES[module.kind]
