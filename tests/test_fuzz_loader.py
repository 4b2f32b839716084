"""Fuzzing the ONNX loader and what runs on a loaded model, with hypothesis (derandomized:
the same examples in every CI run): byte mutations and truncations of serialized models,
random bytes, and structured mutations of the protobuf (operators, attributes, inputs,
initializer types/dims/data, input shapes, opsets). Each model goes through what the CLI
does with it - load and validate, the layer graph, the memory plan, and for QDQ models the
Relax conversion and the golden integer model (float models: the PyTorch twin). The only
exception allowed out is the project's own MpqError.

Seeds: a few hundred bytes of graph structure (tests/fuzz/seeds.py), so most mutations hit
the graph rather than weight bytes, plus one zoo model. tests/fuzz/fuzz_loader_atheris.py
runs the same target under atheris (coverage-guided) when it is installed."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).parent / "fuzz"))
from seeds import tiny_float_model, tiny_qdq_model  # noqa: E402

from tvm_mpq.errors import MpqError  # noqa: E402
from tvm_mpq.models.zoo import zoo_model  # noqa: E402

FLOAT = tiny_float_model()
QDQ = tiny_qdq_model()
SEEDS = {"float": FLOAT.SerializeToString(), "qdq": QDQ.SerializeToString(),
         "zoo": zoo_model("mobilenet_v1_0.25_28").SerializeToString()}


def fuzz_target(data: bytes) -> None:
    """What the CLI does with a model file: a model or MpqError, nothing else."""
    from tvm_mpq.frontend.graph import build_layer_graph
    from tvm_mpq.frontend.loader import load_onnx_bytes
    from tvm_mpq.frontend.qdq import is_qdq
    from tvm_mpq.memory.allocation import allocate

    try:
        model = load_onnx_bytes(data, "fuzz.onnx")
        graph = build_layer_graph(model)
        allocate(graph, 10**12, 10**12)
        if is_qdq(model):
            from tvm_mpq.passes.pipeline import convert
            from tvm_mpq.reference.interpret import run_reference

            im = convert(model, origin="fuzz.onnx")
            n, c, h, w = graph.input_shape
            run_reference(im.mod, np.zeros((n, h, w, c), str(im.mod["main"].params[0].ty.dtype)))
        else:
            from tvm_mpq.quant.torch_model import from_onnx

            from_onnx(model)
    except MpqError as e:
        assert "\n" not in e.one_line()


SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def test_seeds_pass():
    for data in SEEDS.values():
        fuzz_target(data)


@pytest.mark.parametrize("seed", ["float", "qdq"])
@settings(max_examples=300, **SETTINGS)
@given(data=st.data())
def test_byte_mutations(seed, data):
    raw = bytearray(SEEDS[seed])
    edits = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)),
                               min_size=1, max_size=6), "edits")
    for pos, val in edits:
        raw[pos] = val
    if data.draw(st.booleans(), "cut"):
        raw = raw[:data.draw(st.integers(0, len(raw)), "at")]
    fuzz_target(bytes(raw))


@settings(max_examples=40, **SETTINGS)
@given(edits=st.lists(st.tuples(st.integers(0, len(SEEDS["zoo"]) - 1), st.integers(0, 255)),
                      min_size=1, max_size=8),
       cut=st.one_of(st.none(), st.integers(0, len(SEEDS["zoo"]))))
def test_zoo_model_mutations(edits, cut):
    data = bytearray(SEEDS["zoo"])
    for pos, val in edits:
        data[pos] = val
    fuzz_target(bytes(data if cut is None else data[:cut]))


@settings(max_examples=60, **SETTINGS)
@given(st.binary(max_size=2000))
def test_random_bytes(data):
    fuzz_target(data)


@pytest.mark.parametrize("prefix", [b"\x08\x07", b"\x0a\xff\xff\xff\xff\x0f", b"\x12\x00",
                                    b"\x3a\x00", b"\x08\x0a\x3a\x02\x0a\x00"])
def test_header_only_files(prefix):
    fuzz_target(prefix)


# ---------------------------------------------------------------------------------------
# structured mutations of the protobuf

OPS = ["Conv", "Gemm", "MatMul", "Add", "Relu", "Clip", "BatchNormalization", "Reshape",
       "Flatten", "Squeeze", "Identity", "GlobalAveragePool", "AveragePool", "MaxPool",
       "QuantizeLinear", "DequantizeLinear", "Cast", "Transpose", "Constant", "Mul", "Concat",
       "LeakyRelu", "Softmax", "HardSwish", "HardSigmoid", "Sigmoid", "Tanh", "Pad",
       "Dropout", "NoSuchOp"]
ATTRS = ["group", "strides", "pads", "dilations", "kernel_shape", "auto_pad", "transB",
         "transA", "alpha", "beta", "epsilon", "axis", "to", "perm", "count_include_pad",
         "output_dtype", "block_size", "saturate", "training_mode", "min", "max", "ceil_mode",
         "storage_order", "mode"]
TYPES = [TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.INT8,
         TensorProto.UINT8, TensorProto.INT4, TensorProto.UINT4, TensorProto.INT2,
         TensorProto.UINT2, TensorProto.INT32, TensorProto.INT64, TensorProto.BOOL,
         TensorProto.STRING, 0, 999]
INTS = st.one_of(st.integers(-3, 9), st.sampled_from([0, 2**31 - 1, -2**31, 2**40, 100000]))
INT32S = st.one_of(st.integers(-3, 300), st.sampled_from([2**31 - 1, -2**31, 65536]))
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                   st.sampled_from([0.0, -1.0, 1e-30, 1e30]))


def _attr_value(draw, name):
    kind = draw(st.sampled_from(["int", "ints", "float", "str", "tensor"]))
    if kind == "int":
        return draw(INTS)
    if kind == "ints":
        return draw(st.lists(INTS, max_size=5))
    if kind == "float":
        return draw(FLOATS)
    if kind == "str":
        return draw(st.sampled_from(["SAME_UPPER", "VALID", "NOTSET", "", "x" * 40]))
    return helper.make_tensor(name, draw(st.sampled_from([TensorProto.FLOAT,
                                                          TensorProto.INT64])), [1], [1])


@st.composite
def structured(draw):
    m = onnx.ModelProto()
    m.CopyFrom(draw(st.sampled_from([FLOAT, QDQ])))
    g = m.graph
    names = [n.name for n in g.node] + [t.name for t in g.initializer] + ["input", "", "zz"]
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from(["op", "attr", "drop_attr", "input", "drop_input",
                                     "drop_node", "dup_node", "swap_nodes", "dims", "dtype",
                                     "raw", "values", "in_shape", "opset", "output",
                                     "value_info", "domain"]))
        node = g.node[draw(st.integers(0, len(g.node) - 1))] if len(g.node) else None
        init = g.initializer[draw(st.integers(0, len(g.initializer) - 1))] \
            if len(g.initializer) else None
        if what == "op" and node is not None:
            node.op_type = draw(st.sampled_from(OPS))
        elif what == "attr" and node is not None:
            name = draw(st.sampled_from(ATTRS))
            for a in [a for a in node.attribute if a.name == name]:
                node.attribute.remove(a)
            value = _attr_value(draw, name)
            if not (isinstance(value, list) and not value):
                node.attribute.append(helper.make_attribute(name, value))
        elif what == "drop_attr" and node is not None and len(node.attribute):
            del node.attribute[draw(st.integers(0, len(node.attribute) - 1))]
        elif what == "input" and node is not None:
            i = draw(st.integers(0, len(node.input)))
            name = draw(st.sampled_from(names))
            if i < len(node.input):
                node.input[i] = name
            else:
                node.input.append(name)
        elif what == "drop_input" and node is not None and len(node.input):
            del node.input[draw(st.integers(0, len(node.input) - 1))]
        elif what == "drop_node" and node is not None:
            g.node.remove(node)
        elif what == "dup_node" and node is not None:
            g.node.insert(draw(st.integers(0, len(g.node))), node)
        elif what == "swap_nodes" and len(g.node) > 1:
            i, j = draw(st.integers(0, len(g.node) - 1)), draw(st.integers(0, len(g.node) - 1))
            a, b = onnx.NodeProto(), onnx.NodeProto()
            a.CopyFrom(g.node[i])
            b.CopyFrom(g.node[j])
            g.node[i].CopyFrom(b)
            g.node[j].CopyFrom(a)
        elif what == "dims" and init is not None:
            del init.dims[:]
            init.dims.extend(draw(st.lists(st.integers(0, 9), max_size=4)))
        elif what == "dtype" and init is not None:
            init.data_type = draw(st.sampled_from(TYPES))
        elif what == "raw" and init is not None:
            raw = init.raw_data
            init.raw_data = raw[:draw(st.integers(0, len(raw)))] + draw(st.binary(max_size=8))
        elif what == "values" and init is not None:
            init.ClearField("raw_data")
            if init.data_type in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16):
                init.ClearField("float_data")
                init.float_data.extend(draw(st.lists(FLOATS, max_size=8)))
            else:
                init.ClearField("int32_data")
                init.int32_data.extend(draw(st.lists(INT32S, max_size=8)))
        elif what == "in_shape":
            dims = g.input[0].type.tensor_type.shape.dim
            d = dims[draw(st.integers(0, len(dims) - 1))] if len(dims) else None
            if d is not None:
                v = draw(st.one_of(INTS, st.just("N")))
                if isinstance(v, str):
                    d.dim_param = v
                else:
                    d.dim_value = max(v, -(2**62))
        elif what == "opset":
            m.opset_import[0].version = draw(st.sampled_from([1, 7, 10, 13, 19, 21, 25, 99]))
        elif what == "output":
            g.output[0].name = draw(st.sampled_from(names))
        elif what == "value_info":
            g.value_info.append(helper.make_tensor_value_info(
                draw(st.sampled_from(names)), draw(st.sampled_from(TYPES[:10])),
                draw(st.lists(st.integers(0, 9), max_size=4))))
        elif what == "domain" and node is not None:
            node.domain = draw(st.sampled_from(["", "ai.onnx", "com.microsoft", "x"]))
    return m.SerializeToString()


@settings(max_examples=400, **SETTINGS)
@given(structured())
def test_structured_mutations(data):
    fuzz_target(data)


def test_atheris_fixed_run(tmp_path):
    """The same target under atheris (coverage-guided libFuzzer) for a fixed number of runs
    and a fixed seed, when atheris is installed (the `dev` extra on Linux x86-64)."""
    pytest.importorskip("atheris")
    import subprocess

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, data in SEEDS.items():
        if name != "zoo":
            (corpus / name).write_bytes(data)
    script = Path(__file__).parent / "fuzz" / "fuzz_loader_atheris.py"
    p = subprocess.run([sys.executable, str(script), "-runs=20000", "-seed=1", "-max_len=8192",
                        "-rss_limit_mb=4096", f"-artifact_prefix={tmp_path}/", str(corpus)],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-6000:])
    assert "Done 20000 runs" in p.stderr, p.stderr[-3000:]
