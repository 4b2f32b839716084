"""The geometry of a Conv (helper of ops/conv2d.py): kernel, strides, pads and groups from
the ONNX attributes, the loader's rewrite that folds a zero `Pad` and `auto_pad` into the
Conv's explicit pads, and the golden arithmetic over any geometry and groups (the golden
face of ops/conv2d.py calls `conv2d`).

A geometry is the tuple `geo = (kh, kw, sh, sw, pt, pl, pb, pr)`: kernel height and width,
strides along H and W, pads top, left, bottom, right (ONNX `pads` [x1_begin, x2_begin,
x1_end, x2_end] = [t, l, b, r], the order of Relax's conv2d `padding` too). Dilations are 1.
The output is Ho = (H + pt + pb - kh) // sh + 1, Wo = (W + pl + pr - kw) // sw + 1.

Rewrite (`normalize_convs`, run by `frontend.loader.validate` after shape inference, so that
TVM's ONNX frontend, the PyTorch twin and the layer graph all see one plain Conv):
- `auto_pad` SAME_UPPER / SAME_LOWER / VALID becomes explicit `pads` (ONNX's rule: total =
  max(0, (ceil(n / s) - 1) * s + k - n), the odd pixel at the end for SAME_UPPER, at the
  start for SAME_LOWER);
- a `Pad` (mode constant, value 0, spatial axes only, non-negative) whose every consumer is
  a Conv's data input is removed and its pads added to each Conv's pads. The real value 0 is
  the input zero point after quantization, the value the integer conv pads with. A Pad
  feeding a Conv that cannot be folded (another mode or value, negative pads, pads on the
  batch or channel axis) is refused here with the reason.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import ModelError, UnsupportedOpError
from ..reference.icn import check_acc, requantize


def out_hw(h: int, w: int, geo) -> tuple[int, int]:
    kh, kw, sh, sw, pt, pl, pb, pr = geo
    return (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1


def is_plain(geo) -> bool:
    """Square kernel, equal strides, one pad on all sides (the original `kernel`, `stride`,
    `pad` ints say everything)."""
    kh, kw, sh, sw, pt, pl, pb, pr = geo
    return kh == kw and sh == sw and pt == pl == pb == pr


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def same_pads(auto: str, hw, k, s) -> list[int]:
    pads = [0, 0, 0, 0]
    for ax, n in enumerate(hw):
        total = max(0, (-(-n // s[ax]) - 1) * s[ax] + k[ax] - n)
        lo = total // 2 if auto == "SAME_UPPER" else total - total // 2
        pads[ax], pads[ax + 2] = lo, total - lo
    return pads


def onnx_geometry(node, at: dict, in_hw, k_hw) -> tuple[int, ...]:
    """`geo` of an ONNX Conv with input (H, W) and kernel (kh, kw); refuses dilations,
    negative pads and malformed attributes with an error naming the node."""
    op = node.op_type
    if any(int(d) != 1 for d in at.get("dilations", [1, 1])):
        raise UnsupportedOpError(node.name, op, f"dilations {list(at['dilations'])}")
    s = [int(v) for v in at.get("strides", [1, 1])]
    if len(s) != 2 or min(s) < 1:
        raise ModelError(f"node '{node.name}' ({op}): strides {s} (two positive values)")
    auto = _text(at.get("auto_pad", "NOTSET"))
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = same_pads(auto, in_hw, k_hw, s)
    elif auto == "VALID":
        pads = [0, 0, 0, 0]
    elif auto == "NOTSET":
        pads = [int(v) for v in at.get("pads", [0, 0, 0, 0])]
    else:
        raise ModelError(f"node '{node.name}' ({op}): auto_pad {auto!r}")
    if len(pads) != 4:
        raise ModelError(f"node '{node.name}' ({op}): pads {pads} (four values t, l, b, r)")
    if min(pads) < 0:
        raise UnsupportedOpError(node.name, op, f"negative pads {pads}")
    return (int(k_hw[0]), int(k_hw[1]), s[0], s[1], *pads)


# ---- the loader's rewrite ------------------------------------------------------------------

def _set_ints(node, name: str, values) -> None:
    for a in [a for a in node.attribute if a.name == name]:
        node.attribute.remove(a)
    if values is not None:
        node.attribute.append(onnx.helper.make_attribute(name, [int(v) for v in values]))


def _drop(node, name: str) -> None:
    for a in [a for a in node.attribute if a.name == name]:
        node.attribute.remove(a)


def _shape(shapes, name):
    s = shapes.get(name)
    return None if s is None or any(d <= 0 for d in s) else s


def _weight_hw(name, inits, nodes):
    """(kh, kw) of the weights `name` (an initializer, or behind a DequantizeLinear)."""
    if name not in inits:
        prod = next((n for n in nodes if name in n.output), None)
        name = prod.input[0] if prod is not None and prod.input else ""
    t = inits.get(name)
    return None if t is None or len(t.dims) != 4 else tuple(t.dims[2:])


def normalize_convs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Explicit pads for every Conv: auto_pad resolved, zero Pads folded (module docstring).
    Changes `model` in place (a model without either is left untouched) and returns it."""
    g = model.graph
    shapes = {}
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        tt = vi.type.tensor_type
        if tt.HasField("shape"):
            shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else -1
                                    for d in tt.shape.dim)
    inits = {t.name: t for t in g.initializer}
    consts = {n.output[0]: n for n in g.node if n.op_type == "Constant"}
    for node in g.node:
        if node.op_type == "Conv" and any(a.name == "auto_pad" for a in node.attribute):
            at = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            auto = _text(at.get("auto_pad"))
            if auto == "NOTSET":
                _drop(node, "auto_pad")
                continue
            x = _shape(shapes, node.input[0])
            k = at.get("kernel_shape") or _weight_hw(node.input[1], inits, g.node)
            if x is None or k is None or len(x) != 4 or len(k) != 2:
                continue            # the frontend reports what it cannot read
            geo = onnx_geometry(node, at, x[2:], tuple(k))
            _drop(node, "auto_pad")
            _set_ints(node, "pads", geo[4:])
    users: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}
    removed = []
    for pad in [n for n in g.node if n.op_type == "Pad"]:
        cons = users.get(pad.output[0], [])
        if not cons or pad.output[0] in outputs or any(
                c.op_type != "Conv" or list(c.input).index(pad.output[0]) != 0 for c in cons):
            continue                # not feeding only convs: the frontend refuses the Pad
        before_after = _pad_amounts(pad, inits, consts, shapes)
        for conv in cons:
            at = {a.name: onnx.helper.get_attribute_value(a) for a in conv.attribute}
            old = [int(v) for v in at.get("pads", [0, 0, 0, 0])]
            if len(old) != 4:
                raise ModelError(f"node '{conv.name}' (Conv): pads {old}")
            (t, l_), (b, r) = before_after
            _set_ints(conv, "pads", [old[0] + t, old[1] + l_, old[2] + b, old[3] + r])
            conv.input[0] = pad.input[0]
        removed.append(pad)
    if removed:
        for pad in removed:
            g.node.remove(pad)
            for vi in [v for v in g.value_info if v.name == pad.output[0]]:
                g.value_info.remove(vi)
        used = {i for n in g.node for i in n.input}
        for n in [n for n in g.node if n.op_type == "Constant" and n.output[0] not in used]:
            g.node.remove(n)
        keep = [t for t in g.initializer if t.name in used or t.name in
                {i.name for i in g.input}]
        if len(keep) != len(g.initializer):
            del g.initializer[:]
            g.initializer.extend(keep)
    return model


def _const(name, inits, consts):
    if not name:
        return None
    if name in inits:
        return numpy_helper.to_array(inits[name])
    if name in consts:
        for a in consts[name].attribute:
            if a.name == "value":
                return numpy_helper.to_array(a.t)
    return False        # not a constant


def _pad_amounts(pad, inits, consts, shapes):
    """((top, left), (bottom, right)) of a foldable Pad feeding a Conv, else an error."""
    op = pad.op_type
    at = {a.name: onnx.helper.get_attribute_value(a) for a in pad.attribute}
    mode = _text(at.get("mode", "constant"))
    if mode != "constant":
        raise UnsupportedOpError(pad.name, op, f"mode {mode!r} before a Conv (only constant 0 "
                                 "padding folds into the conv)")
    if "pads" in at:                                  # opset < 11
        pads, value, axes = list(at["pads"]), float(at.get("value", 0.0)), None
    else:
        pads = _const(pad.input[1] if len(pad.input) > 1 else "", inits, consts)
        v = _const(pad.input[2] if len(pad.input) > 2 else "", inits, consts)
        axes = _const(pad.input[3] if len(pad.input) > 3 else "", inits, consts)
        if pads is None or pads is False or v is False or axes is False:
            raise UnsupportedOpError(pad.name, op, "pads, value and axes must be constants")
        value = 0.0 if v is None or np.size(v) == 0 else float(np.ravel(v)[0])
        pads = [int(p) for p in np.ravel(pads)]
        axes = None if axes is None else [int(a) for a in np.ravel(axes)]
    if value != 0.0:
        raise UnsupportedOpError(pad.name, op, f"constant value {value:g} before a Conv (only "
                                 "0 folds into the conv)")
    rank = 4
    axes = list(range(rank)) if axes is None else [a % rank for a in axes]
    if len(pads) != 2 * len(axes):
        raise ModelError(f"node '{pad.name}' ({op}): {len(pads)} pads for {len(axes)} axes")
    full = [0] * (2 * rank)
    for i, a in enumerate(axes):
        full[a], full[rank + a] = pads[i], pads[len(axes) + i]
    if full[0] or full[1] or full[4] or full[5]:
        raise UnsupportedOpError(pad.name, op, f"pads {full} on the batch or channel axis "
                                 "before a Conv")
    if min(full) < 0:
        raise UnsupportedOpError(pad.name, op, f"negative pads {full} (cropping)")
    return (full[2], full[3]), (full[6], full[7])


# ---- golden model ---------------------------------------------------------------------

def _im2col(x: np.ndarray, kh: int, kw: int, sh: int, sw: int, pads, z_in: int):
    """(H, W, C) -> (Ho, Wo, kh, kw, C) patches, padded with z_in."""
    h, w, c = x.shape
    pt, pl, pb, pr = pads
    xp = np.full((h + pt + pb, w + pl + pr, c), z_in, dtype=np.int64)
    xp[pt:pt + h, pl:pl + w] = x
    ho, wo = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    cols = np.empty((ho, wo, kh, kw, c), np.int64)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j, :] = xp[i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw, :]
    return cols


def conv2d_acc(x, w, w_zero, bias, z_in, stride, pad, depthwise=False, acc_shift=0, *,
               strides=None, pads=None, group=1):
    """int32 accumulators (Ho, Wo, Cout) of a conv on NHWC x (1, H, W, C); w OHWI
    (Cout, KH, KW, C / group). `stride`, `pad`: square and symmetric, unless `strides`
    (sh, sw) / `pads` (t, l, b, r) are given. depthwise: group = C, w (Cout, KH, KW, 1),
    output channel o reads input channel o // (Cout / C)."""
    x = np.asarray(x, np.int64)[0]
    w = np.asarray(w, np.int64)
    sh, sw = strides if strides is not None else (stride, stride)
    pads = tuple(pads) if pads is not None else (pad,) * 4
    cout, kh, kw = w.shape[:3]
    c = x.shape[-1]
    cols = _im2col(x, kh, kw, int(sh), int(sw), pads, z_in) - z_in  # (Ho, Wo, kh, kw, C)
    ho, wo = cols.shape[:2]
    wz = w - np.asarray(w_zero, np.int64).reshape(-1, 1, 1, 1)
    if depthwise:
        src = np.arange(cout) // (cout // c)
        acc = np.einsum("hwijc,cij->hwc", cols[..., src].astype(np.float64),
                        wz[..., 0].astype(np.float64))
    else:
        cin_g, cout_g = c // group, cout // group
        parts = []
        for g in range(group):
            cg = cols[..., g * cin_g:(g + 1) * cin_g].reshape(ho * wo, -1)
            wg = wz[g * cout_g:(g + 1) * cout_g].reshape(cout_g, -1)
            parts.append(cg.astype(np.float64) @ wg.T.astype(np.float64))
        acc = np.concatenate(parts, axis=1).reshape(ho, wo, -1)
    acc = np.rint(acc) * float(1 << acc_shift) + np.asarray(bias, np.float64)
    return check_acc(acc, "conv2d")


def conv2d(x, w, w_zero, bias, z_in, stride, pad, m0, n0, z_out, q_min, q_max,
           depthwise=False, acc_shift=0, *, strides=None, pads=None, group=1):
    acc = conv2d_acc(x, w, w_zero, bias, z_in, stride, pad, depthwise, acc_shift,
                     strides=strides, pads=pads, group=group)
    return requantize(acc, m0, n0, z_out, q_min, q_max)[None]
