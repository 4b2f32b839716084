"""QDQ export: types, per-channel axes, metadata, and onnx.reference == the torch model."""

import copy
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, numpy_helper
from onnx.reference import ReferenceEvaluator

from tvm_mpq.errors import PlanError
from tvm_mpq.frontend.graph import build_layer_graph
from tvm_mpq.frontend.loader import validate
from tvm_mpq.memory.allocation import allocate
from tvm_mpq.memory.plan import plan_from_json
from tvm_mpq.models.zoo import zoo_model
from tvm_mpq.quant.calibrate import calibrate, synthetic_inputs
from tvm_mpq.quant.export_qdq import export_qdq
from tvm_mpq.quant.fake_quant import configure
from tvm_mpq.quant.qparams import QTYPES, layer_qparams, plan_metadata, read_qdq_params
from tvm_mpq.quant.qplan import layer_configs, make_plan
from tvm_mpq.quant.torch_model import from_onnx

MODEL = "mobilenet_v1_0.25_32"
TYPE_BITS = {TensorProto.UINT8: 8, TensorProto.UINT4: 4, TensorProto.UINT2: 2}


@pytest.fixture(scope="module")
def base():
    model = validate(zoo_model(MODEL))
    return model, build_layer_graph(model), from_onnx(model)


def _plans(graph):
    wl = graph.weight_layers
    w_bits = {la.name: 4 for la in wl if la.kind == "pointwise"}
    w_bits.update({"block3.dw": 2, "block7.pw": 2, "block13.pw": 2, "conv0": 4})
    out_bits = {"block2.pw": 4, "block5.dw": 2, "block5.pw": 4, "block9.pw": 2,
                "block10.dw": 4}
    return {
        "all8": make_plan(graph, "mixpl"),
        "mixpl": make_plan(graph, "mixpl", w_bits, out_bits),
        "mixpl_84": make_plan(graph, "mixpl", {"block4.pw": 4, "block6.dw": 4},
                              {"block3.pw": 4}),
        "mixpc": make_plan(graph, "mixpc", w_bits, out_bits),
        "mixpc_alloc": allocate(graph, 120_000, 12_000, "mixpc").to_json(),
    }


def _quantized(net, plan, n=48):
    q = copy.deepcopy(net)
    configure(q, plan)
    calibrate(q, synthetic_inputs(q, n, seed=1))
    return q.eval()


@pytest.mark.parametrize("which", ["all8", "mixpl", "mixpl_84", "mixpc", "mixpc_alloc"])
def test_export_matches_reference_and_plan(base, which):
    _, graph, net = base
    plan = _plans(graph)[which]
    plan_from_json(plan, graph)              # a valid plan of the project's schema
    q = _quantized(net, plan)
    m = export_qdq(q, batch=None)
    onnx.checker.check_model(m, full_check=True)
    assert plan_metadata(m) == json.loads(json.dumps(plan))
    has2 = any(e[k] == 2 for e in plan["layers"] for k in ("in_bits", "out_bits", "w_bits"))
    assert m.opset_import[0].version == (25 if has2 else 21)

    inits = {t.name: t for t in m.graph.initializer}
    nodes = {n.name: n for n in m.graph.node}
    for e in plan["layers"]:
        name = e["name"]
        wq = inits[f"{name}.weight_q"]
        assert TYPE_BITS[wq.data_type] == e["w_bits"]
        assert inits[f"{name}.weight_zero_point"].data_type == wq.data_type
        n_w = int(np.prod(wq.dims))
        assert len(wq.raw_data) == (n_w * e["w_bits"] + 7) // 8        # packed
        dq = nodes[f"{name}.weight_dequant"]
        scale = inits[f"{name}.weight_scale"]
        if e["per_channel"]:
            assert list(scale.dims) == [wq.dims[0]]
            assert [a.i for a in dq.attribute if a.name == "axis"] == [0]
        else:
            assert list(scale.dims) == []
        if name == "fc":
            zp = inits["fc.out_zero_point"]
            assert zp.data_type == TensorProto.INT8 and int(numpy_helper.to_array(zp)) == 0
            continue
        assert inits[f"{name}.act_zero_point"].data_type == QTYPES[(e["out_bits"], False)]
        conv = nodes[name]
        assert conv.op_type == "Conv"
        if e["icn"]:
            assert f"{name}.bn" in nodes and len(conv.input) == 2
        else:
            assert f"{name}.bn" not in nodes and len(conv.input) == 3
    pool_q = nodes["pool.quant"]
    assert pool_q.input[1:] == ["block13.pw.act_scale", "block13.pw.act_zero_point"]

    _check_reference(q, m, synthetic_inputs(q, 24, seed=7))

    # the integer parameters read back from the file are those of the torch model
    for a, b in zip(layer_qparams(q), read_qdq_params(m), strict=True):
        for k, v in vars(a).items():
            w = getattr(b, k)
            if isinstance(v, np.ndarray) or isinstance(w, np.ndarray):
                assert v is not None and w is not None and np.array_equal(v, w), (a.name, k)
            else:
                assert v == w, (a.name, k, v, w)


def _check_reference(q, m, x):
    """onnx.reference vs the torch fake-quant model, layer by layer (each torch layer fed
    the reference's input: at most one quantization step apart, rarely, from the order of
    float sums) and end to end (logits within a few steps, the same top-1)."""
    acts = [f"{la.name}.dq" for la in q.layers[:-1]]
    m2 = copy.deepcopy(m)
    m2.graph.output.extend(onnx.ValueInfoProto(name=a) for a in acts)
    outs = ReferenceEvaluator(m2).run(None, {"input": x})
    yr, inner = outs[0], outs[1:]
    h_in = q.iq(torch.from_numpy(x))
    with torch.no_grad():
        for la, ref_in, ref_out in zip(q.layers, [h_in] + inner, inner + [yr]):
            h = torch.as_tensor(ref_in)
            h = h.flatten(1) if la.kind == "linear" else h
            got = la(h).numpy()
            quant = la.aq if getattr(la, "aq", None) is not None else (
                la.requant if la.kind == "pool" else la.oq)
            steps = np.abs(got - ref_out.reshape(got.shape)) / float(quant.scale())
            assert steps.max() <= 1.0 + 1e-3, (la.name, steps.max())
            assert (steps > 1e-3).mean() < 1e-3, (la.name, (steps > 1e-3).mean())
        y = q(torch.from_numpy(x)).numpy()
    step = float(q.layers[-1].oq.scale())
    assert np.abs(y - yr).mean() <= step, np.abs(y - yr).mean() / step
    assert np.array_equal(y.argmax(1), yr.argmax(1))
    assert not np.allclose(y, y[:1])        # a non-degenerate batch


def test_folded_and_icn_layers_agree_with_float_at_8_bits(base):
    """8-bit everywhere: the fake-quant model stays close to the float model."""
    _, graph, net = base
    plan = make_plan(graph, "mixpl", icn={"block1.dw": True, "block2.pw": True})
    q = _quantized(net, plan, n=64)
    x = torch.from_numpy(synthetic_inputs(q, 16, seed=3))
    with torch.no_grad():
        yf, yq = net.eval()(x), q(x)
    assert float((yf - yq).abs().max()) < 0.2 * float(yf.abs().max())
    assert np.corrcoef(yf.flatten(), yq.flatten())[0, 1] > 0.98


def test_onnxruntime_runs_8_and_4_bit_export(base):
    _, graph, net = base
    q = _quantized(net, _plans(graph)["mixpl_84"])
    m = export_qdq(q)                         # batch 1, opset 21
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    x = synthetic_inputs(q, 4, seed=5)
    yr = np.concatenate([s.run(None, {"input": x[i:i + 1]})[0] for i in range(4)])
    with torch.no_grad():
        y = q(torch.from_numpy(x)).numpy()
    # onnxruntime fuses QDQ into integer kernels with its own rounding: close, not exact
    assert np.all(np.isfinite(yr)) and np.corrcoef(y.flatten(), yr.flatten())[0, 1] > 0.95


def test_plan_mismatches(base):
    _, graph, net = base
    other = build_layer_graph(validate(zoo_model("mobilenet_v1_0.5_28")))
    with pytest.raises(PlanError, match="not 'mobilenet_v1_0.25_32'"):
        layer_configs(make_plan(other, "mixpl"), net)
    plan = make_plan(graph, "mixpl")
    del plan["layers"][3]
    with pytest.raises(PlanError, match="no entry for layer.s. block2.dw"):
        layer_configs(plan, net)
    plan = make_plan(graph, "mixpl", out_bits={"block2.pw": 4})
    plan["layers"][5]["in_bits"] = 8        # block2.pw feeds 4 bits into block3.dw
    with pytest.raises(PlanError, match="in_bits 8 but the previous layer outputs 4"):
        layer_configs(plan, net)
    plan = make_plan(graph, "mixpl")
    plan["layers"][-1]["out_bits"] = 4
    with pytest.raises(PlanError, match="logits"):
        layer_configs(plan, net)
