"""Conv beyond square, symmetric, group-1 convolutions (tvm_mpq/ops/conv2d.py): non-square
kernels (10x4, 1x3, 3x1), 5x5 / 7x7, strides (2, 1), (1, 2), 3, asymmetric pads, auto_pad,
a zero Pad folded into the conv, groups 2 and 4, depthwise with channel multiplier 2.

- the golden model == onnx.reference on the same integer-valued inputs;
- host kernel == golden: the geometries x all 27 (in, out, weight) bit combinations, signed
  and unsigned, on the DSP path (im2col GEMM, depthwise) and the plain kernel;
- QEMU == host == golden for a handful in one firmware image;
- bad attributes as one-line errors (`tvm-mpq inspect`), the Pad fold, the layer geometry.
Whole models through the flow: tests/test_op_conv2d_models.py.
"""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from conftest import assert_user_error, run_cli
from test_codegen_kernels import Case, _run_all
from tvm_mpq.codegen import kernel_dsp, kernels
from tvm_mpq.codegen.kernels import KernelSpec, pack_params
from tvm_mpq.ops.conv2d import conv2d, conv2d_acc
from tvm_mpq.ops.conv2d_geometry import out_hw, same_pads
from tvm_mpq.reference import icn
from tvm_mpq.reference.packing import pack

COMBOS = list(itertools.product((8, 4, 2), repeat=3))

# name: (kernel (kh, kw), strides (sh, sw), pads (t, l, b, r), group, C_in, C_out, H, W)
GEOMS = {
    "dscnn_10x4_s2": ((10, 4), (2, 2), (5, 1, 5, 1), 1, 1, 8, 13, 10),
    "k1x3": ((1, 3), (1, 1), (0, 1, 0, 1), 1, 5, 3, 6, 7),
    "k3x1": ((3, 1), (1, 1), (1, 0, 1, 0), 1, 4, 5, 7, 5),
    "k5x5": ((5, 5), (1, 1), (2, 2, 2, 2), 1, 3, 4, 7, 6),
    "k7x7_s2": ((7, 7), (2, 2), (3, 3, 3, 3), 1, 3, 5, 11, 9),
    "s2x1": ((3, 3), (2, 1), (1, 1, 1, 1), 1, 6, 4, 9, 6),
    "s1x2": ((3, 3), (1, 2), (0, 1, 1, 0), 1, 5, 3, 6, 9),
    "s3": ((3, 3), (3, 3), (1, 1, 1, 1), 1, 4, 4, 10, 8),
    "same_s2": ((3, 3), (2, 2), (0, 0, 1, 1), 1, 8, 6, 8, 8),
    "pw_s2x1": ((1, 1), (2, 1), (0, 0, 0, 0), 1, 9, 5, 6, 5),
    "group2": ((3, 3), (1, 1), (1, 1, 1, 1), 2, 6, 4, 6, 6),
    "group4": ((3, 3), (2, 2), (0, 0, 1, 1), 4, 8, 8, 7, 7),
    "group2_pw": ((1, 1), (1, 1), (0, 0, 0, 0), 2, 8, 6, 5, 5),
    "dw_mult2": ((3, 3), (1, 1), (1, 1, 1, 1), 3, 3, 6, 6, 6),
    "dw_mult2_s2": ((3, 3), (2, 2), (0, 0, 1, 1), 5, 5, 10, 7, 7),
    "dw_5x5": ((5, 5), (1, 1), (2, 2, 2, 2), 6, 6, 6, 7, 7),
    "dw_7x7_s2": ((7, 7), (2, 2), (3, 3, 3, 3), 5, 5, 5, 9, 9),
    "dw_3x3_asym": ((3, 3), (2, 2), (0, 0, 1, 1), 7, 7, 7, 8, 8),
    "dw_3x1": ((3, 1), (1, 1), (1, 0, 1, 0), 4, 4, 4, 6, 5),
}


def _depthwise(g) -> bool:
    _, _, _, group, cin, _, _, _ = g
    return group > 1 and group == cin


def _onnx_conv(x, w, b, geo, group, auto_pad=None):
    (kh, kw), s, p = geo
    at = dict(kernel_shape=[kh, kw], strides=list(s), group=group)
    at.update(auto_pad=auto_pad) if auto_pad else at.update(pads=list(p))
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], **at)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(a.shape))
                                        for n, a in (("x", x), ("w", w), ("b", b))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    feeds = {"x": x.astype(np.float32), "w": w.astype(np.float32), "b": b.astype(np.float32)}
    return ReferenceEvaluator(m).run(None, feeds)[0]


def _golden_acc(x_nchw, w_oihw, w_zero, bias, z_in, geo, group, depthwise):
    (kh, kw), s, p = geo
    x = np.transpose(x_nchw, (0, 2, 3, 1))
    w = np.transpose(w_oihw, (0, 2, 3, 1))
    acc = conv2d_acc(x, w, w_zero, bias, z_in, 1, 0, depthwise, strides=s, pads=p,
                     group=1 if depthwise else group)
    return np.transpose(acc[None], (0, 3, 1, 2))


@pytest.mark.parametrize("name", sorted(GEOMS))
def test_golden_equals_onnx_reference(name):
    k, s, p, group, cin, cout, h, w = GEOMS[name]
    rng = np.random.default_rng(len(name))
    x = rng.integers(0, 16, (1, cin, h, w))
    wt = rng.integers(-8, 8, (cout, cin // group, *k))
    wz = rng.integers(-2, 3, cout)
    bias = rng.integers(-100, 100, cout)
    z_in = 5
    want = _onnx_conv(x - z_in, wt - wz.reshape(-1, 1, 1, 1), bias, (k, s, p), group)
    got = _golden_acc(x, wt, wz, bias, z_in, (k, s, p), group, _depthwise(GEOMS[name]))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("auto", ["SAME_UPPER", "SAME_LOWER", "VALID"])
@pytest.mark.parametrize("ks", [((3, 3), (2, 2)), ((10, 4), (2, 2)), ((5, 2), (3, 1))])
def test_golden_auto_pad_equals_onnx_reference(auto, ks):
    k, s = ks
    rng = np.random.default_rng(3)
    x = rng.integers(-8, 8, (1, 2, 11, 8))
    wt = rng.integers(-8, 8, (4, 2, *k))
    bias = np.zeros(4, np.int64)
    pads = same_pads(auto, (11, 8), k, s) if auto != "VALID" else [0, 0, 0, 0]
    want = _onnx_conv(x, wt, bias, (k, s, None), 1, auto_pad=auto)
    got = _golden_acc(x, wt, np.zeros(4, np.int64), bias, 0, (k, s, pads), 1, False)
    np.testing.assert_array_equal(got, want)


# ---- host kernels == golden --------------------------------------------------------------------
def _range(bits, signed):
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def geo_case(seed, name, in_bits, out_bits, w_bits, *, in_signed=False, out_signed=False,
             w_signed=False, dsp=True, arrays=False):
    """A packed kernel case of geometry GEOMS[name]; arrays: also (spec, x bytes, params, y)."""
    k, s, p, group, cin, cout, h, w = GEOMS[name]
    dw = _depthwise(GEOMS[name])
    rng = np.random.default_rng(seed)
    ho, wo = out_hw(h, w, (*k, *s, *p))
    q_min, q_max = _range(out_bits, out_signed)
    z_in = int(rng.integers(*_range(in_bits, in_signed)))
    x = rng.integers(_range(in_bits, in_signed)[0], _range(in_bits, in_signed)[1] + 1,
                     (1, h, w, cin))
    wlo, whi = _range(w_bits, w_signed)
    wt = rng.integers(wlo, whi + 1, (cout, *k, 1 if dw else cin // group))
    w_zero = rng.integers(wlo, whi + 1, cout) if seed % 2 else np.full(cout, int(rng.integers(wlo, whi + 1)))
    bias = rng.integers(-1500, 1500, cout)
    k_el = k[0] * k[1] * (1 if dw else cin // group)
    scale = (1 << out_bits) / max(1.0, np.sqrt(k_el) * (1 << in_bits) * (1 << w_bits) / 4)
    m0, n0 = icn.quantize_multipliers(rng.uniform(0.3, 3.0, cout) * scale
                                      * rng.choice([1, 1, 1, -1], cout))
    acc_shift = seed % 3
    n0 = (np.asarray(n0) - acc_shift).astype(np.int8)
    z_out = int(rng.integers(q_min, min(q_max, q_min + 2) + 1))
    kind = "depthwise" if dw else ("pointwise" if k == (1, 1) and not any(p) and group == 1
                                   else "conv")
    spec = KernelSpec(kind, (1, h, w, cin), (1, ho, wo, cout), kernel_hw=k, strides=s, pads=p,
                      group=1 if dw else group, in_bits=in_bits, out_bits=out_bits,
                      w_bits=w_bits, in_signed=in_signed, out_signed=out_signed,
                      w_signed=w_signed, z_in=z_in, z_out=z_out, q_min=q_min, q_max=q_max,
                      acc_shift=acc_shift, suffix=f"g{seed}{'' if dsp else 'p'}", dsp=dsp,
                      ties=icn.ties_possible(m0, n0), shift_hi=bool(np.all(n0 <= -2)))
    y = conv2d(x, wt, w_zero, bias, z_in, 1, 0, m0, n0, z_out, q_min, q_max, depthwise=dw,
               acc_shift=acc_shift, strides=s, pads=p, group=1 if dw else group)
    params = pack_params(spec, wt, w_zero, bias, m0, n0)
    xb = pack(x[0], in_bits).tobytes()
    if arrays:
        return spec, xb, params, y
    return Case(spec, [xb] + [params[n][1] for n in ("w", "w_zero", "bias", "m0", "n0")], y)


def _combo_cases(name, base, dsp=True):
    return [geo_case(base + i, name, ib, ob, wb, in_signed=i % 4 == 1, out_signed=i % 5 == 2,
                     w_signed=i % 3 == 0, dsp=dsp) for i, (ib, ob, wb) in enumerate(COMBOS)]


# every combination for these; a few combinations for the others
ALL_COMBOS = ("dscnn_10x4_s2", "same_s2", "s1x2", "group2", "dw_mult2_s2", "dw_5x5")


@pytest.mark.parametrize("name", ALL_COMBOS)
def test_host_kernel_equals_golden_all_bit_combos(host_builder, name):
    base = 1000 * (1 + sorted(GEOMS).index(name))
    cases = _combo_cases(name, base)
    if GEOMS[name][3] == 1:                     # group 1: the plain kernel too
        cases += _combo_cases(name, base + 500, dsp=False)
    _run_all(host_builder, cases)


def test_host_kernel_equals_golden_every_geometry(host_builder):
    cases = []
    for j, name in enumerate(sorted(GEOMS)):
        for i, (ib, ob, wb) in enumerate([(8, 8, 8), (4, 8, 2), (2, 4, 4), (8, 2, 8)]):
            for dsp in (True, False):
                cases.append(geo_case(50 * j + 2 * i + dsp, name, ib, ob, wb,
                                      in_signed=i == 1, out_signed=i == 2, w_signed=i != 3,
                                      dsp=dsp))
    _run_all(host_builder, cases)


def test_dsp_path_by_geometry():
    """Which kernel each geometry gets: the im2col GEMM for every group-1 conv (the general
    im2col only where the ints cannot say the geometry), the DSP depthwise kernels for
    square, symmetric, multiplier-1 depthwise (5x5 and 7x7 too); the plain kernel else."""
    fast = {n: kernels.is_fast(geo_case(0, n, 8, 8, 8).spec) for n in GEOMS}
    assert fast == {n: (g[3] == 1 or (_depthwise(g) and g[5] == g[4] and g[1][0] == g[1][1]
                                       and len(set(g[2])) == 1 and g[0][0] == g[0][1]))
                    for n, g in GEOMS.items()}, fast
    src = kernels.generate_kernel(geo_case(0, "dscnn_10x4_s2", 8, 8, 8).spec).c_source
    assert "mpq_dsp_im2col_g(" in src
    assert "mpq_dsp_im2col_g" not in kernels.generate_kernel(
        geo_case(0, "k5x5", 8, 8, 8).spec).c_source          # square, symmetric: as before
    assert kernel_dsp.layout(geo_case(0, "dw_7x7_s2", 8, 8, 8).spec) == "depthwise"


def test_spec_late_fields_are_canonical():
    """A square, symmetric geometry given through the late fields is the same spec (name,
    digest, C) as through kernel / stride / pad."""
    a = KernelSpec("conv", (1, 6, 6, 4), (1, 3, 3, 5), kernel=3, stride=2, pad=1)
    b = KernelSpec("conv", (1, 6, 6, 4), (1, 3, 3, 5), kernel_hw=(3, 3), strides=(2, 2),
                   pads=(1, 1, 1, 1), group=1)
    assert a == b and a.name == b.name
    c = KernelSpec("conv", (1, 6, 6, 4), (1, 3, 3, 5), kernel_hw=(3, 3), strides=(2, 2),
                   pads=(0, 0, 1, 1))
    assert c.name != a.name and "pads=(0, 0, 1, 1)" in kernels.generate_kernel(c).c_source
    assert "pads=" not in kernels.generate_kernel(a).c_source


# ---- QEMU == host == golden --------------------------------------------------------------------
QEMU_CASES = [("dscnn_10x4_s2", (8, 8, 8)), ("dscnn_10x4_s2", (8, 4, 4)), ("same_s2", (4, 8, 8)),
              ("s2x1", (8, 8, 2)), ("k1x3", (2, 4, 8)), ("group2", (8, 8, 8)),
              ("dw_mult2_s2", (8, 4, 8)), ("dw_5x5", (8, 8, 8)), ("dw_7x7_s2", (4, 4, 4)),
              ("dw_3x3_asym", (8, 8, 8)), ("k7x7_s2", (8, 8, 4))]


@pytest.mark.slow
def test_kernels_on_qemu_equal_host_and_golden(tmp_path):
    from kernel_image import build_image, check_image

    cases = [(*geo_case(7000 + i, n, *b, w_signed=i % 2 == 0, dsp=i % 4 != 3, arrays=True),
              None) for i, (n, b) in enumerate(QEMU_CASES)]
    check_image(*build_image(cases, tmp_path))


# ---- bad attributes -------------------------------------------------------------------------
def _model(nodes, in_shape, out_shape, inits):
    g = helper.make_graph(nodes, "bad", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                       in_shape)],
                          [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT,
                                                         out_shape)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    return m


def _w(shape, name="w"):
    return numpy_helper.from_array(np.ones(shape, np.float32), name)


def _pad_conv(pads, mode="constant", value=None, cin=2):
    inits = [_w((4, cin, 3, 3)), numpy_helper.from_array(np.array(pads, np.int64), "pads")]
    ins = ["x", "pads"]
    if value is not None:
        inits.append(numpy_helper.from_array(np.array(value, np.float32), "v"))
        ins.append("v")
    return [helper.make_node("Pad", ins, ["xp"], name="the_pad", mode=mode),
            helper.make_node("Conv", ["xp", "w"], ["y"], name="the_conv")], inits


@pytest.mark.parametrize("case, needle", [
    ("dilations", "dilations"), ("negative_pads", "negative values"),
    ("pad_reflect", "reflect"), ("pad_value", "value 1"), ("pad_channels", "channel axis"),
    ("pad_negative", "negative pads")])
def test_bad_attributes_are_one_line_errors(tmp_path, case, needle):
    where = "the_conv"
    if case == "dilations":
        nodes, inits = [helper.make_node("Conv", ["x", "w"], ["y"], name="the_conv",
                                         dilations=[2, 2])], [_w((4, 2, 3, 3))]
        out = [1, 4, 4, 4]
    elif case == "negative_pads":
        nodes, inits = [helper.make_node("Conv", ["x", "w"], ["y"], name="the_conv",
                                         pads=[-1, 0, 0, 0])], [_w((4, 2, 3, 3))]
        out = [1, 4, 5, 6]
    else:
        where = "the_pad"
        (nodes, inits), out = {
            "pad_reflect": lambda: (_pad_conv([0, 0, 1, 1, 0, 0, 1, 1], "reflect"), [1, 4, 8, 8]),
            "pad_value": lambda: (_pad_conv([0, 0, 1, 1, 0, 0, 1, 1], value=1.0), [1, 4, 8, 8]),
            "pad_channels": lambda: (_pad_conv([0, 1, 1, 1, 0, 1, 1, 1], cin=4), [1, 4, 8, 8]),
            "pad_negative": lambda: (_pad_conv([0, 0, -1, 0, 0, 0, 1, 1]), [1, 4, 6, 7]),
        }[case]()
    m = _model(nodes, [1, 2, 8, 8], out, inits)
    onnx.save(m, tmp_path / "bad.onnx")
    assert_user_error(run_cli("inspect", tmp_path / "bad.onnx"), where, needle)


def test_pad_is_folded_into_the_conv(tmp_path):
    from tvm_mpq.frontend.graph import build_layer_graph
    from tvm_mpq.frontend.loader import validate

    nodes, inits = _pad_conv([0, 0, 0, 0, 0, 0, 1, 1])
    m = validate(_model(nodes, [1, 2, 8, 8], [1, 4, 7, 7], inits))
    assert [n.op_type for n in m.graph.node] == ["Conv"]
    layer = build_layer_graph(m).layers[0]
    assert layer.attrs == {"kernel_hw": [3, 3], "strides": [1, 1], "pads": [0, 0, 1, 1],
                           "group": 1}
    assert layer.out_shape == (1, 4, 7, 7) and layer.macs == 4 * 49 * 2 * 9


def test_layer_geometry_and_macs():
    from tvm_mpq.frontend.graph import build_layer_graph
    from tvm_mpq.frontend.loader import validate
    from tvm_mpq import ops

    conv = helper.make_node("Conv", ["x", "w"], ["c"], name="c1", strides=[2, 1],
                            auto_pad="SAME_UPPER", group=2)
    dw = helper.make_node("Conv", ["c", "w2"], ["y"], name="dw", group=6, pads=[1, 0, 1, 0])
    m = validate(_model([conv, dw], [1, 4, 9, 6], [1, 12, 5, 6], [_w((6, 2, 4, 3)),
                                                          _w((12, 1, 3, 1), "w2")]))
    c1, d = build_layer_graph(m).layers
    assert c1.kind == "conv" and c1.attrs == {"kernel_hw": [4, 3], "strides": [2, 1],
                                              "pads": [1, 1, 2, 1], "group": 2}
    assert c1.out_shape == (1, 6, 5, 6) and c1.macs == 6 * 5 * 6 * 2 * 12
    assert d.kind == "depthwise" and d.out_shape == (1, 12, 5, 6) and d.macs == 12 * 30 * 3
    op = ops.for_kind("conv")
    assert op.plan_scratch_bytes(c1) == 0 and op.plan_scratch_bytes(d) == 0
