"""The PyTorch twin of a float ONNX model: exact against onnxruntime, and back to ONNX."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from tvm_mpq.data.fashion_mnist import load_fashion_mnist, pixels_to_input, to_model_input
from tvm_mpq.errors import MpqError, UnsupportedOpError
from tvm_mpq.models.zoo import zoo_model
from tvm_mpq.quant.faces.conv2d import ConvLayer
from tvm_mpq.quant.torch_model import from_onnx, to_float_onnx


def _ort(model, x):
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])


@pytest.mark.parametrize("name", ["mobilenet_v1_0.25_32", "mobilenet_v1_0.25_28"])
def test_float_twin_matches_onnxruntime(name):
    model = zoo_model(name)
    net = from_onnx(model).eval()
    assert [m.name for m in net.layers][:3] == ["conv0", "block1.dw", "block1.pw"]
    assert net.layers[-1].name == "fc" and net.layers[-2].name == "pool"
    x = np.random.default_rng(0).uniform(-1, 1, (4, *net.input_shape)).astype(np.float32)
    ref = _ort(model, x)
    with torch.no_grad():
        y = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


def test_float_round_trip_is_exact():
    model = zoo_model("mobilenet_v1_0.25_32", seed=3)
    net = from_onnx(model)
    back = to_float_onnx(net)
    onnx.checker.check_model(back)
    # the same nodes and initializers (names and values) as the zoo model
    assert [n.name for n in back.graph.node] == [n.name for n in model.graph.node]
    want = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    got = {t.name: numpy_helper.to_array(t) for t in back.graph.initializer}
    assert want.keys() == got.keys()
    for k, v in want.items():
        np.testing.assert_array_equal(v, got[k], err_msg=k)
    # a trained twin exports its new weights
    with torch.no_grad():
        net.layer("block2.pw").weight.mul_(2.0)
    again = from_onnx(to_float_onnx(net))
    for a, b in zip(net.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_reset_parameters_is_pytorch_default_init():
    """The float phase's start from the zoo (quant.train float_init): the weights of fresh
    nn.Conv2d / nn.BatchNorm2d / nn.Linear layers built after torch.manual_seed(seed)."""
    net = from_onnx(zoo_model("mobilenet_v1_0.25_28"))
    net.reset_parameters(seed=5)
    torch.manual_seed(5)
    for m in net.layers:
        if isinstance(m, ConvLayer):
            cout, cin_g, k, _ = m.weight.shape
            ref = torch.nn.Conv2d(cin_g * m.groups, cout, k, groups=m.groups, bias=False)
            assert torch.equal(m.weight, ref.weight), m.name
            bn = torch.nn.BatchNorm2d(cout)
            for a, b in ((m.bn.weight, bn.weight), (m.bn.bias, bn.bias),
                         (m.bn.running_mean, bn.running_mean), (m.bn.running_var, bn.running_var)):
                assert torch.equal(a, b), m.name
            assert m.bn.eps == pytest.approx(1e-3)      # the model's own eps is kept
        elif m.kind == "linear":
            ref = torch.nn.Linear(m.weight.shape[1], m.weight.shape[0])
            assert torch.equal(m.weight, ref.weight) and torch.equal(m.bias, ref.bias)


def test_unsupported_models_are_rejected():
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 8, 8])
    g = helper.make_graph([helper.make_node("Elu", ["input"], ["y"], name="lr")],
                          "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    with pytest.raises(UnsupportedOpError, match="Elu at node 'lr'"):
        from_onnx(m)


def test_model_input_layout():
    p = np.array([[[0, 128, 255] + [7] * 25] * 28], np.uint8)
    x = to_model_input(p, 32, 3)
    assert x.shape == (1, 3, 32, 32) and x.dtype == np.float32
    assert np.all(x[:, :, :2] == -1.0) and np.all(x[:, :, :, -2:] == -1.0)   # pixel 0 pad
    assert x[0, 0, 2, 2] == -1.0 and x[0, 0, 2, 3] == 0.0 and x[0, 2, 2, 4] == 127 / 128
    assert np.array_equal(x[:, 0], x[:, 1])
    assert np.array_equal(pixels_to_input(np.arange(256, dtype=np.uint8)) * 128 + 128,
                          np.arange(256))
    assert to_model_input(p, 28, 1).shape == (1, 1, 28, 28)
    with pytest.raises(MpqError, match="channels"):
        to_model_input(p, 28, 2)


def test_fashion_mnist_loader(tmp_path):
    with pytest.raises(MpqError, match="not found") as e:
        load_fashion_mnist("test", data_dir=tmp_path)
    assert "dataset-fashion-mnist" in e.value.one_line()
    try:
        images, labels = load_fashion_mnist("test")
    except MpqError:
        pytest.skip("Fashion-MNIST is not installed")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(np.unique(labels)) == set(range(10))
