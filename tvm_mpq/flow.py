"""The whole flow as functions (the CLI verbs, the demo and the benches call these):

    model (float or QDQ ONNX) --plan--> precisions --quantize--> QDQ ONNX
        --convert--> integer Relax --codegen--> C project --build--> firmware
"""

from __future__ import annotations

import copy
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from .errors import MpqError
from .frontend.graph import LayerGraph, build_layer_graph
from .frontend.loader import validate
from .frontend.qdq import is_qdq

log = logging.getLogger("tvm_mpq")


@dataclass
class Budget:
    flash_bytes: int
    ram_bytes: int
    scheme: str = "mixpc"
    ram_model: str | None = None      # None: chain for chains, else liveness


def plan_model(graph: LayerGraph, budget: Budget):
    from .memory.allocation import allocate

    return allocate(graph, budget.flash_bytes, budget.ram_bytes, budget.scheme,
                    budget.ram_model)


def calibration_inputs(model: onnx.ModelProto, calib: str, n: int, seed: int = 0) -> np.ndarray:
    """`synthetic` (with a warning), `fashion-mnist` (training images) or an .npy file."""
    from .quant.torch_model import from_onnx

    net = from_onnx(model)
    if calib == "synthetic":
        from .quant.calibrate import synthetic_inputs

        log.warning("warning: synthetic calibration (random images): the quantization ranges "
                    "fit noise, not data; use the result for footprint and latency work only")
        return synthetic_inputs(net, n, seed)
    if calib == "fashion-mnist":
        from .quant.workflow import dataset

        data = dataset(net, "fashion-mnist", "train", n)
        return data.inputs(np.arange(len(data))).numpy()
    from .tensor_io import load_calibration_npy

    return load_calibration_npy(calib, net.input_shape, n)


def quantize_model(model: onnx.ModelProto, graph: LayerGraph, plan_json: dict,
                   x_calib: np.ndarray) -> onnx.ModelProto:
    """Post-training calibration of `model` for the plan; returns the QDQ ONNX model."""
    from .quant.calibrate import calibrate
    from .quant.export_qdq import export_qdq
    from .quant.fake_quant import configure
    from .quant.workflow import load_net_and_plan

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "plan.json"
        p.write_text(json.dumps(plan_json))
        net, plan = load_net_and_plan(model, graph, str(p))
    net.eval()
    qnet = copy.deepcopy(net)
    configure(qnet, plan)
    calibrate(qnet, x_calib)
    qnet.eval()
    return export_qdq(qnet)


def embedded_plan(model: onnx.ModelProto) -> dict | None:
    from .quant.qparams import plan_metadata

    try:
        return plan_metadata(model)
    except (ValueError, json.JSONDecodeError):
        return None


@dataclass
class Prepared:
    qdq: onnx.ModelProto
    graph: LayerGraph
    plan_json: dict | None


def prepare(model: onnx.ModelProto, origin: str, budget: Budget | None, calib: str,
            num_samples: int = 256) -> Prepared:
    """A QDQ model passes through; a float model is planned (needs a budget) and quantized."""
    model = validate(model, origin)
    graph = build_layer_graph(model)
    if is_qdq(model):
        return Prepared(model, graph, embedded_plan(model))
    if budget is None:
        raise MpqError(f"{origin} is a float model: give a memory budget (--device stm32h743, "
                       "or --flash and --ram) so it can be planned and quantized")
    plan = plan_model(graph, budget)
    log.info(f"plan ({budget.scheme}): {plan.bits_string()}")
    x = calibration_inputs(model, calib, num_samples)
    plan_json = plan.to_json()
    return Prepared(quantize_model(model, graph, plan_json, x), graph, plan_json)


def layer_info(graph: LayerGraph) -> dict:
    return {layer.name: {"macs": layer.macs, "params": layer.n_params} for layer in graph.layers}
