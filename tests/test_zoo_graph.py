"""Model zoo and layer graph: standard MobileNetV1 figures, structure, determinism."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tvm_mpq.frontend.graph import build_layer_graph
from tvm_mpq.frontend.loader import validate
from tvm_mpq.models.zoo import zoo_model, zoo_names


def graph_of(name, **kw):
    return build_layer_graph(validate(zoo_model(name, **kw)))


# Howard et al. 2017, Table 6 (MACs, parameters). TF-slim's README lists 317 M MACs for
# 0.75_224, inconsistent with its own channel counts (24..768); the paper's 325 M is
# what those layer shapes give.
STANDARD = {
    "mobilenet_v1_1.0_224": (569e6, 4.2e6),
    "mobilenet_v1_0.75_224": (325e6, 2.59e6),
    "mobilenet_v1_0.5_224": (149.5e6, 1.32e6),
    "mobilenet_v1_0.25_224": (41e6, 0.47e6),
}


@pytest.mark.parametrize("name", sorted(STANDARD))
def test_standard_figures(name):
    macs, params = STANDARD[name]
    g = graph_of(name)
    assert g.total_macs == pytest.approx(macs, rel=0.01)
    assert g.total_params == pytest.approx(params, rel=0.01)


def test_structure_follows_tf_slim():
    g = graph_of("mobilenet_v1_1.0_224")
    kinds = [layer.kind for layer in g.layers]
    assert kinds == ["conv"] + ["depthwise", "pointwise"] * 13 + ["pool", "linear"]
    conv0 = g.layers[0]
    assert (conv0.kernel, conv0.stride, conv0.out_shape) == (3, 2, (1, 32, 112, 112))
    assert g.layers[-3].out_shape == (1, 1024, 7, 7)
    assert g.layers[-1].out_shape == (1, 1000)
    strides = [layer.stride for layer in g.layers if layer.kind == "depthwise"]
    assert strides == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]


def test_small_variant():
    g = graph_of("mobilenet_v1_0.25_32")
    assert g.input_shape == (1, 1, 32, 32)
    assert g.layers[0].stride == 1
    assert g.layers[-1].out_shape == (1, 10)
    g = graph_of("mobilenet_v1_0.5_28", num_classes=7, in_channels=3)
    assert g.input_shape == (1, 3, 28, 28) and g.layers[-1].out_shape == (1, 7)


def test_all_zoo_names_build():
    for name in zoo_names():
        g = graph_of(name)
        assert len(g.weight_layers) == 28


def test_deterministic_bytes():
    a = zoo_model("mobilenet_v1_0.25_128").SerializeToString()
    b = zoo_model("mobilenet_v1_0.25_128").SerializeToString()
    assert a == b
    c = zoo_model("mobilenet_v1_0.25_128", seed=1).SerializeToString()
    assert a != c


def test_given_weights_override():
    from tvm_mpq.models.mobilenet_v1 import MobileNetV1Config, build_mobilenet_v1

    cfg = MobileNetV1Config(0.25, 32, 10, 1)
    w = np.ones((8, 1, 3, 3), np.float32)
    m = build_mobilenet_v1(cfg, weights={"conv0.weight": w})
    init = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    np.testing.assert_array_equal(init["conv0.weight"], w)
    with pytest.raises(ValueError):
        build_mobilenet_v1(cfg, weights={"conv0.weight": np.ones((3, 3), np.float32)})
    with pytest.raises(ValueError):
        build_mobilenet_v1(cfg, weights={"nope": w})


def test_zoo_model_runs_in_onnxruntime():
    m = zoo_model("mobilenet_v1_0.25_128")
    x = np.random.default_rng(0).standard_normal((1, 3, 128, 128)).astype(np.float32)
    y = ort.InferenceSession(m.SerializeToString()).run(None, {"input": x})[0]
    assert y.shape == (1, 1000) and np.all(np.isfinite(y)) and y.std() > 0
