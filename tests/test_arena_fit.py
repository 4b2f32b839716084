"""`tvm-mpq compile` keeps the generated arena within the RAM budget: when the kernels'
scratch (im2col columns, depthwise rings) would push it over, leaner schedules take their
place, and the firmware stays exact."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx

from tvm_mpq.codegen import kernel_dsp
from tvm_mpq.codegen.kernels import KernelSpec
from tvm_mpq.commands.compile import fit_arena
from tvm_mpq.flow import layer_info, prepare
from tvm_mpq.passes.pipeline import convert

ROOT = Path(__file__).resolve().parents[1]
QDQ = ROOT / "models" / "fashion_mnist" / "mobilenet_v1_0.25_28.mixpc_100kB_12kB.qat.onnx"


def test_lean_schedules_need_less_scratch():
    for spec in (KernelSpec("pointwise", (1, 14, 14, 64), (1, 14, 14, 32)),
                 KernelSpec("conv", (1, 16, 16, 8), (1, 8, 8, 16), kernel=3, stride=2, pad=1),
                 KernelSpec("depthwise", (1, 28, 28, 64), (1, 28, 28, 64), kernel=3, pad=1)):
        default = kernel_dsp.scratch_bytes(spec)
        one = kernel_dsp.scratch_bytes(spec.with_schedule(kernel_dsp.lean_schedule(spec, 1)))
        two = kernel_dsp.scratch_bytes(spec.with_schedule(kernel_dsp.lean_schedule(spec, 2)))
        assert default > one >= two, spec.kind
    assert kernel_dsp.lean_schedule(KernelSpec("avg_pool", (1, 4, 4, 8), (1, 1, 1, 8),
                                               kernel=4), 1) is None


def test_arena_over_the_budget_takes_leaner_kernels(caplog):
    model = onnx.load(str(QDQ))
    prep = prepare(model, str(QDQ), None, "random")
    mod = convert(prep.qdq, origin=str(QDQ)).mod
    info = layer_info(prep.graph)
    default = fit_arena(mod, "m", info, None, None)
    assert fit_arena(mod, "m", info, None, 10 ** 9).memory.arena_bytes == \
        default.memory.arena_bytes
    with caplog.at_level(logging.WARNING, logger="tvm_mpq"):
        lean = fit_arena(mod, "m", info, None, default.memory.arena_bytes - 1)
    assert lean.memory.arena_bytes < default.memory.arena_bytes
    assert "RAM budget" in caplog.text
    # an impossible budget: the leanest arena, still a valid model (the build reports it)
    leanest = fit_arena(mod, "m", info, None, 1)
    assert leanest.memory.arena_bytes <= lean.memory.arena_bytes
    activations = max(b.size for b in leanest.memory.buffers if b.kind != "scratch")
    assert leanest.memory.arena_bytes >= activations
    assert np.all([la.get("schedule") is not None for la in leanest.layers
                   if la.get("kind") in ("conv", "pointwise")])
