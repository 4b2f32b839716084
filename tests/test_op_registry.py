"""The operator registry is complete: every registered operator declares every face the
stages use, its keys are unique, and it brings the tests docs/operators.md asks for (listed
in COVERAGE; a new operator without its entry fails here by name)."""

from __future__ import annotations

import re

import pytest

from conftest import ROOT
from tvm_mpq import ops
from tvm_mpq.ops.base import Operator

# operator -> the tests that check it: golden vs an independent reference, host kernel ==
# golden over shapes x bits, QEMU == host == golden, bad attributes as one-line errors
COVERAGE = {
    "conv2d": {"independent": "test_op_conv2d_general.py::test_golden_equals_onnx_reference",
               "host": "test_op_conv2d_general.py::test_host_kernel_equals_golden_all_bit_combos",
               "qemu": "test_op_conv2d_general.py::test_kernels_on_qemu_equal_host_and_golden",
               "bad": "test_op_conv2d_general.py::test_bad_attributes_are_one_line_errors"},
    "linear": {"independent": "test_convert.py::test_onnxruntime_qdq_model",
               "host": "test_codegen_kernels.py::test_linear_all_bit_combos_signed_int8_logits",
               "qemu": "test_kernels_qemu.py::test_every_kernel_on_qemu_equals_host_and_golden",
               "bad": "test_bad_models.py::test_bad_float_model"},
    "avg_pool": {"independent": "test_convert.py::test_onnxruntime_qdq_model",
                 "host": "test_codegen_kernels.py::test_avg_pool_all_bit_combos",
                 "qemu": "test_kernels_qemu.py::test_every_kernel_on_qemu_equals_host_and_golden",
                 "bad": "test_bad_models.py::test_bad_float_model"},
    "max_pool": {"independent": "test_op_max_pool.py::test_golden_equals_onnx_reference",
                 "host": "test_op_max_pool.py::test_host_kernel_equals_golden",
                 "qemu": "test_op_max_pool.py::test_tutorial_cnn_on_qemu_equals_host_and_golden",
                 "bad": "test_op_max_pool.py::test_bad_attributes_are_one_line_errors"},
    "add": {"independent": "test_residual.py::test_residual_add_converts_and_matches_golden",
            "host": "test_codegen_kernels.py::test_add_all_bit_combos",
            "qemu": "test_kernels_qemu.py::test_every_kernel_on_qemu_equals_host_and_golden",
            "bad": "test_bad_models.py::test_bad_float_model"},
    "activation": {"independent": "test_op_activation.py::test_golden_equals_onnx_reference",
                   "host": "test_op_activation.py::test_host_kernel_equals_golden",
                   "qemu": "test_op_activation.py::test_activation_cnn_on_qemu_equals_host_and_golden",
                   "bad": "test_op_activation.py::test_bad_attributes_are_one_line_errors"},
    "mul": {"independent": "test_op_mul.py::test_golden_equals_onnx_reference",
            "host": "test_op_mul.py::test_host_kernel_equals_golden",
            "qemu": "test_op_mul.py::test_se_cnn_on_qemu_equals_host_and_golden",
            "bad": "test_op_mul.py::test_bad_attributes_are_one_line_errors"},
    "softmax": {"independent": "test_op_softmax.py::test_golden_equals_onnx_reference",
                "host": "test_op_softmax.py::test_host_kernel_equals_golden",
                "qemu": "test_op_softmax.py::test_softmax_cnn_on_qemu_equals_host_and_golden",
                "bad": "test_op_softmax.py::test_bad_attributes_are_one_line_errors"},
    "concat": {"independent": "test_op_concat.py::test_golden_equals_onnx_reference",
               "host": "test_op_concat.py::test_host_kernel_equals_golden",
               "qemu": "test_op_concat.py::test_se_hswish_net_on_qemu_equals_host_and_golden",
               "bad": "test_op_concat.py::test_bad_attributes_are_one_line_errors"},
}

FACES = ("from_onnx", "legalize", "golden", "spec_from_call", "c_args", "build_kernel")


def _op_ids():
    return [op.name for op in ops.all_ops()]


@pytest.mark.parametrize("name", _op_ids())
def test_operator_declares_every_face(name):
    op = next(o for o in ops.all_ops() if o.name == name)
    missing = [f for f in FACES if getattr(type(op), f) is getattr(Operator, f)]
    assert not missing, f"operator '{name}' lacks the faces {missing}"
    for attr in ("kinds", "onnx_types", "mpq_ops", "relax_patterns", "kernel_kinds"):
        assert getattr(op, attr), f"operator '{name}' declares no {attr}"
    assert set(op.c_kind) == set(op.kernel_kinds), name
    for kind in op.kinds + op.kernel_kinds:
        assert kind in op.colors, f"operator '{name}': no report colour for '{kind}'"
    if op.has_weights:
        assert set(op.letters) == set(op.kinds), f"operator '{name}': plan letters"
    for mpq_op, (n_inputs, infer, legalize) in op.mpq_ops.items():
        assert mpq_op.startswith("mpq.") and n_inputs >= 1 and callable(infer) \
            and callable(legalize), mpq_op
    assert ops.for_onnx(op.onnx_types[0]) is op and ops.for_kind(op.kinds[0]) is op
    assert op.torch_face, f"operator '{name}' declares no PyTorch training face"
    assert set(op.training_face().kinds) == set(op.kinds), name


@pytest.mark.parametrize("name", _op_ids())
def test_operator_brings_its_tests(name):
    assert name in COVERAGE, (f"operator '{name}' has no entry in COVERAGE: add the tests "
                              "docs/operators.md asks for and list them here")
    for what in ("independent", "host", "qemu", "bad"):
        ref = COVERAGE[name].get(what)
        assert ref, f"operator '{name}': no {what} test"
        path, func = ref.split("::")
        text = (ROOT / "tests" / path).read_text()
        assert re.search(rf"^def {func}\(", text, re.M), f"{ref} does not exist"


def test_keys_are_unique_and_letters_distinct():
    letters = ops.letters()
    assert len(set(letters.values())) == len(letters)
    assert ops.weight_kinds() == ("conv", "depthwise", "pointwise", "linear")


def test_unknown_lookups_name_what_is_missing():
    with pytest.raises(ops.MissingFace, match="no operator owns the layer kind 'nope'"):
        ops.for_kind("nope")
    assert ops.for_onnx("Elu") is None
