"""A user's ONNX model made ready for the flow, before it is validated.

Models as exporters write them (torch.onnx.export, tf2onnx, onnxruntime's quantize_static)
differ from the flow's canonical form in ways that carry no arithmetic:

1. Input shape. A dynamic batch dimension (`N`, `batch_size`, `unk__123`) is taken as 1 and
   said once on stderr; `--input-shape NAME:D0,D1,...` sets the whole shape (the only way
   for other dynamic dimensions). Stale shapes of intermediate tensors are dropped so that
   shape inference recomputes them for the fixed input.
2. Graph clean-up, float models only (a QDQ model's Quantize/Dequantize pairs are its
   contract and stay as they are), by onnxslim: constant folding (Clip bounds from
   Constant nodes, shape arithmetic), Identity/Dropout removal, dead nodes, MatMul + Add
   -> Gemm, Conv + BatchNormalization folding, shape inference.
   A BatchNormalization right after a Gemm (dense + batch-norm, which onnxslim leaves) is
   folded into the Gemm's weights and bias.
   A Mul by a scalar constant before a Gemm/MatMul/Conv (through layout-only nodes), as
   Paddle exports its inference-time dropout (x * 0.8), is folded into that layer's weights.
3. Layout. tf2onnx's NHWC input behind Transpose(perm 0, 3, 1, 2) becomes an NCHW input
   of the same name (the flow's integer graph is NHWC anyway, so the firmware takes the
   user's NHWC data unchanged); `metadata_props["tvm_mpq.input_layout"] = "NHWC"` records
   it.

Models that tvm-mpq wrote itself (producer "tvm-mpq": the zoo, exports of `quantize` and
`train`) are already canonical and pass through unchanged.
"""

from __future__ import annotations

import logging

import onnx
from onnx import helper

from ..errors import ModelError

log = logging.getLogger("tvm_mpq")
LAYOUT_KEY = "tvm_mpq.input_layout"
_OWN_PRODUCER = "tvm-mpq"


def parse_input_shape(text: str | None) -> tuple[str | None, tuple[int, ...]] | None:
    """`NAME:1,49,10,1` (or `1,49,10,1` for the only input) -> (name or None, dims)."""
    if not text:
        return None
    name, _, dims = text.rpartition(":")
    try:
        shape = tuple(int(d) for d in dims.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise ModelError(f"--input-shape '{text}': expected NAME:D0,D1,... with positive "
                         "integers, e.g. input:1,49,10,1")
    return (name or None), shape


def prepare_model(model: onnx.ModelProto, origin: str,
                  input_shape: tuple[str | None, tuple[int, ...]] | None = None
                  ) -> onnx.ModelProto:
    """Steps 1-3 of the module docstring; `model` is not modified."""
    if model.producer_name == _OWN_PRODUCER and input_shape is None:
        return model
    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {t.name for t in m.graph.initializer}
    inputs = [i for i in m.graph.input if i.name not in inits]
    if len(inputs) != 1:
        return model            # validate() says what is wrong
    changed = _fix_input_shape(m, inputs[0], origin, input_shape)
    if not _is_qdq(m):
        m = _slim(m, origin)
        _fold_scalar_muls(m)
        _fold_gemm_batch_norms(m)
        changed = True
    elif changed:
        m = _infer_shapes(m, origin)
    changed |= _nhwc_input(m)
    return m if changed else model


def _fix_input_shape(m, vi, origin, input_shape) -> bool:
    tt = vi.type.tensor_type
    dims = list(tt.shape.dim) if tt.HasField("shape") else []
    if input_shape is not None:
        name, shape = input_shape
        if name is not None and name != vi.name:
            raise ModelError(f"--input-shape names '{name}', but the model's input is "
                             f"'{vi.name}'")
        new = list(shape)
    else:
        if not dims:
            return False
        dynamic = [i for i, d in enumerate(dims) if not d.HasField("dim_value")]
        if dynamic != [0]:
            return False        # static, or other dynamic dims: validate() names them
        sym = dims[0].dim_param or "?"
        log.warning(f"warning: {origin}: input '{vi.name}' has a dynamic batch dimension "
                    f"'{sym}'; taken as 1 (--input-shape {vi.name}:D0,D1,... sets the shape)")
        new = [1] + [d.dim_value for d in dims[1:]]
    tt.ClearField("shape")
    tt.shape.dim.extend(onnx.TensorShapeProto.Dimension(dim_value=d) for d in new)
    del m.graph.value_info[:]
    for o in m.graph.output:        # recomputed by shape inference for the fixed input
        if o.type.tensor_type.HasField("shape") and any(
                not d.HasField("dim_value") for d in o.type.tensor_type.shape.dim):
            o.type.tensor_type.ClearField("shape")
    return True


def _infer_shapes(m, origin):
    """Shapes for the fixed input, the graph outputs' included."""
    try:
        return onnx.shape_inference.infer_shapes(m, data_prop=True)
    except Exception as e:  # noqa: BLE001 - onnx raises InferenceError and others
        raise ModelError(f"{origin}: shape inference failed for the fixed input shape: "
                         f"{' '.join(str(e).split())[:200]}") from None


def _is_qdq(m) -> bool:
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in m.graph.node)


def _slim(m, origin):
    import onnxslim

    try:
        out = onnxslim.slim(m)
    except Exception as e:  # noqa: BLE001 - onnxslim raises many types on odd models
        raise ModelError(f"{origin}: the graph clean-up (onnxslim) failed: "
                         f"{' '.join(str(e).split())[:200]}") from None
    if out is None:
        raise ModelError(f"{origin}: the graph clean-up (onnxslim) returned no model")
    return out


_LAYOUT_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")


def _fold_scalar_muls(m) -> None:
    """x * c (c a scalar initializer) whose only path is layout ops into the data input of a
    Gemm / MatMul / Conv with initializer weights: scale those weights by c instead (exact
    in real arithmetic: the layer is linear in its input)."""
    import numpy as np
    from onnx import numpy_helper

    g = m.graph
    inits = {t.name: t for t in g.initializer}
    for mul in [n for n in g.node if n.op_type == "Mul"]:
        const = [t for t in mul.input if t in inits and
                 int(np.prod(numpy_helper.to_array(inits[t]).shape)) == 1]
        if len(const) != 1:
            continue
        x = next(t for t in mul.input if t != const[0])
        tensor, node = mul.output[0], None
        while True:
            users = [n for n in g.node if tensor in n.input]
            if len(users) != 1:
                break
            node = users[0]
            if node.op_type not in _LAYOUT_OPS or node.input[0] != tensor:
                break
            tensor = node.output[0]
        if node is None or node.op_type not in ("Gemm", "MatMul", "Conv") \
                or node.input[0] != tensor or len(node.input) < 2 \
                or node.input[1] not in inits \
                or sum(node.input[1] in n.input for n in g.node) != 1:
            continue
        c = float(numpy_helper.to_array(inits[const[0]]).ravel()[0])
        w = inits[node.input[1]]
        w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * np.float32(c), w.name))
        for n in g.node:                    # the Mul's consumers read x itself
            for k, name in enumerate(n.input):
                if name == mul.output[0]:
                    n.input[k] = x
        g.node.remove(mul)


def _fold_gemm_batch_norms(m) -> None:
    """Gemm (constant weights, transB 0/1, alpha = beta = 1) -> BatchNormalization (its
    only consumer, constant parameters): W' = W k, b' = (b - mean) k + beta with
    k = gamma / sqrt(var + eps), per output feature (exact in eval mode)."""
    import numpy as np
    from onnx import numpy_helper

    g = m.graph
    inits = {t.name: t for t in g.initializer}
    for bn in [n for n in g.node if n.op_type == "BatchNormalization"]:
        gemm = next((n for n in g.node if bn.input[0] in n.output), None)
        if gemm is None or gemm.op_type != "Gemm" or len(bn.output) != 1 \
                or any(t not in inits for t in list(bn.input[1:5]) + list(gemm.input[1:])) \
                or sum(bn.input[0] in n.input for n in g.node) != 1 \
                or sum(gemm.input[1] in n.input for n in g.node) != 1:
            continue
        at = {a.name: helper.get_attribute_value(a) for a in gemm.attribute}
        if at.get("transA", 0) or at.get("alpha", 1.0) != 1.0 or at.get("beta", 1.0) != 1.0:
            continue
        eps = next((helper.get_attribute_value(a) for a in bn.attribute
                    if a.name == "epsilon"), 1e-5)
        gamma, beta, mean, var = (numpy_helper.to_array(inits[t]).astype(np.float64)
                                  for t in bn.input[1:5])
        k = gamma / np.sqrt(var + eps)
        w = numpy_helper.to_array(inits[gemm.input[1]]).astype(np.float64)
        w = w * k[:, None] if at.get("transB", 0) else w * k[None, :]
        b = numpy_helper.to_array(inits[gemm.input[2]]).astype(np.float64) \
            if len(gemm.input) > 2 and gemm.input[2] else np.zeros(len(k))
        for name, arr in ((gemm.input[1], w), (f"{gemm.name}.bn_bias", (b - mean) * k + beta)):
            t = numpy_helper.from_array(arr.astype(np.float32), name)
            if name in inits:
                inits[name].CopyFrom(t)
            else:
                g.initializer.append(t)
        del gemm.input[2:]
        gemm.input.append(f"{gemm.name}.bn_bias")
        gemm.output[0] = bn.output[0]
        g.node.remove(bn)


def _nhwc_input(m) -> bool:
    """Input (1, H, W, C) consumed only by Transpose(0, 3, 1, 2) -> input (1, C, H, W)."""
    g = m.graph
    inits = {t.name for t in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1:
        return False            # validate() says what is wrong
    vi = inputs[0]
    users = [n for n in g.node if vi.name in n.input]
    if len(users) != 1 or users[0].op_type != "Transpose":
        return False
    t = users[0]
    perm = next((list(helper.get_attribute_value(a)) for a in t.attribute if a.name == "perm"),
                None)
    dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    if perm != [0, 3, 1, 2] or len(dims) != 4 or min(dims) < 1:
        return False
    out = t.output[0]
    for n in g.node:
        for k, name in enumerate(n.input):
            if name == out:
                n.input[k] = vi.name
    g.node.remove(t)
    n_, h, w, c = dims
    del vi.type.tensor_type.shape.dim[:]
    vi.type.tensor_type.shape.dim.extend(
        onnx.TensorShapeProto.Dimension(dim_value=d) for d in (n_, c, h, w))
    del g.value_info[:]
    helper.set_model_props(m, {**{p.key: p.value for p in m.metadata_props},
                               LAYOUT_KEY: "NHWC"})
    return True
