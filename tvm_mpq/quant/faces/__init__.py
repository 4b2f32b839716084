"""Per-operator faces of the PyTorch training twin: one file per operator family.

    conv2d.py    conv, depthwise, pointwise   Conv + BN? + Relu | Clip(0, M)
    linear.py    linear                       Gemm / MatMul (+ Relu)
    avg_pool.py  pool                         GlobalAveragePool / AveragePool (no padding)
    add.py       add                          residual Add (+ Relu)
    max_pool.py  maxpool                      MaxPool
    activation.py activation                  HardSwish, HardSigmoid, Sigmoid, Tanh, LeakyRelu
    mul.py       mul                          Mul of two activations (broadcast (1, C, 1, 1))
    softmax.py   softmax                      Softmax of (1, N), fixed output 2^-bits, -2^(bits-1)
    concat.py    concat                       Concat on the channel axis

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
export_qdq) loops over the layers and asks `face_of(module)` / `face_for(kind)`: the
operator registry (tvm_mpq/ops/) says which face serves a kind (`Operator.torch_face`).
"""

from __future__ import annotations

from ... import ops
from ...errors import UnsupportedOpError
from .base import Face


def face_for(kind: str, node: str = "?") -> Face:
    """The training face its operator declares for a layer kind (`Operator.torch_face`);
    UnsupportedOpError for a kind without one."""
    try:
        return ops.for_kind(kind).training_face()
    except ops.MissingFace:
        known = sorted(k for op in ops.all_ops() if op.torch_face for k in op.kinds)
        raise UnsupportedOpError(node, kind, "no PyTorch twin for this layer kind "
                                 f"(known: {', '.join(known)})") from None


def face_of(module) -> Face:
    """The face of a twin module (its `kind`)."""
    return face_for(module.kind, module.name)
