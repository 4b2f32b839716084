"""Fashion-MNIST accuracy of the quantization schemes on a small MobileNetV1.

Trains the float model (or loads --float-checkpoint), then for each scheme measures the
post-training-calibrated accuracy (PTQ) and the accuracy after quantization-aware
retraining (QAT) on the test set:

  float                      no quantization
  8-bit                      MixPL plan, all tensors 8-bit, batch-norm folded
  MixPL (allocator)          `allocate(graph, FLASH, RAM, "mixpl")`: real 4- and 2-bit tensors
  MixPC (allocator)          the same budgets, per-channel weights + ICN
  ICN, 4-bit weights         every weight tensor 4-bit per layer, ICN (batch-norm unfolded)
  folding, 4-bit weights     the same, batch-norm folded into the weights (outside the plan
                             schema: an experiment only)

    .venv/bin/python bench/accuracy_table.py --float-epochs 3 --qat-epochs 1
    .venv/bin/python bench/accuracy_table.py --float-checkpoint f.onnx --qat-epochs 10
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tvm_mpq.data.fashion_mnist import load_fashion_mnist
from tvm_mpq.frontend.graph import build_layer_graph
from tvm_mpq.frontend.loader import load_model, validate
from tvm_mpq.memory.allocation import allocate
from tvm_mpq.quant.calibrate import calibrate
from tvm_mpq.quant.fake_quant import configure
from tvm_mpq.quant.qplan import make_plan
from tvm_mpq.quant.torch_model import from_onnx
from tvm_mpq.quant.train import ImageData, TrainConfig, evaluate, run_training
from tvm_mpq.quant.workflow import load_float_weights, write_float
from tvm_mpq.report.table import format_table

log = logging.getLogger("tvm_mpq")


def variants(graph, flash: int, ram: int) -> list[tuple[str, dict]]:
    wl = graph.weight_layers
    all4 = {la.name: 4 for la in wl}
    return [
        ("8-bit (MixPL, folded)", make_plan(graph, "mixpl")),
        ("MixPL (allocator)", allocate(graph, flash, ram, "mixpl").to_json()),
        ("MixPC (allocator)", allocate(graph, flash, ram, "mixpc").to_json()),
        ("ICN, 4-bit weights", make_plan(graph, "mixpl", all4, icn={n: True for n in all4})),
        ("folding, 4-bit weights", make_plan(graph, "mixpl", all4,
                                             icn={n: False for n in all4})),
    ]


def low_bits(plan: dict) -> str:
    w = [e["w_bits"] for e in plan["layers"]]
    a = [e["out_bits"] for e in plan["layers"]]
    return (f"w 4b:{w.count(4)} 2b:{w.count(2)} / act 4b:{a.count(4)} 2b:{a.count(2)}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="mobilenet_v1_0.25_32")
    p.add_argument("--float-epochs", type=int, default=3)
    p.add_argument("--float-lr", type=float, default=1e-3, help="float Adam lr (cosine decay)")
    p.add_argument("--float-checkpoint", help="float ONNX to start from (skips float training)")
    p.add_argument("--save-float", help="write the trained float model here")
    p.add_argument("--qat-epochs", type=int, default=1)
    p.add_argument("--qat-init", choices=["pact6", "calibrate"], default="pact6",
                   help="initial PACT clips for QAT: 6.0 (the method) or calibrated")
    p.add_argument("--only", help="comma-separated scheme names (prefixes) to run")
    p.add_argument("--limit-train", type=int, default=None, help="float training images")
    p.add_argument("--qat-limit-train", type=int, default=None, help="QAT training images")
    p.add_argument("--limit-test", type=int, default=None)
    p.add_argument("--calib-samples", type=int, default=1024)
    p.add_argument("--flash", type=int, default=120_000, help="allocator FLASH budget, bytes")
    p.add_argument("--ram", type=int, default=12_000, help="allocator RAM budget, bytes")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the results as JSON")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    t_start = time.time()

    model = validate(load_model(args.model))
    graph = build_layer_graph(model)
    net = from_onnx(model)
    train_imgs, train_lbl = load_fashion_mnist("train")
    test = ImageData(*load_fashion_mnist("test"), net.input_shape, args.limit_test)
    train = ImageData(train_imgs, train_lbl, net.input_shape, args.limit_train)
    qat_train = ImageData(train_imgs, train_lbl, net.input_shape, args.qat_limit_train)
    calib_x = train.inputs(np.arange(min(args.calib_samples, len(train)))).numpy()
    work = Path(tempfile.mkdtemp(prefix="mpq_bench_"))
    plans = variants(graph, args.flash, args.ram)
    if args.only:
        keep = [k.strip() for k in args.only.split(",")]
        plans = [(n, pl) for n, pl in plans if any(n.startswith(k) for k in keep)]

    # float model
    t0 = time.time()
    if args.float_checkpoint:
        load_float_weights(net, args.float_checkpoint)
        float_acc = evaluate(net, test)
    else:
        cfg = TrainConfig(epochs=0, float_epochs=args.float_epochs, seed=args.seed,
                          float_lr=args.float_lr,
                          threads=args.threads, limit_train=args.limit_train,
                          progress=sys.stderr.isatty())
        res = run_training(net, make_plan(graph, "mixpl"), train, test, cfg, work / "float",
                           resume=False)
        float_acc = res.float_acc
    if args.save_float:
        write_float(net, args.save_float)
    rows = [["float", "-", "-", f"{100 * float_acc:.2f}", "-", f"{time.time() - t0:.0f}"]]
    results = [{"name": "float", "acc": float_acc}]

    for name, plan in plans:
        t0 = time.time()
        q = copy.deepcopy(net)
        configure(q, plan)
        calibrate(q, calib_x)
        ptq = evaluate(q, test)
        qat = None
        if args.qat_epochs > 0:
            cfg = TrainConfig(epochs=args.qat_epochs, float_epochs=0, seed=args.seed,
                              qat_init=args.qat_init,
                              threads=args.threads, limit_train=args.qat_limit_train,
                              progress=sys.stderr.isatty())
            res = run_training(copy.deepcopy(net), plan, qat_train, test, cfg,
                               work / name.replace(" ", "_"), resume=False)
            qat = res.qat_acc
        rows.append([name, low_bits(plan), f"{plan['ro_bytes']:,}", f"{100 * ptq:.2f}",
                     "-" if qat is None else f"{100 * qat:.2f}", f"{time.time() - t0:.0f}"])
        results.append({"name": name, "plan_bits": low_bits(plan), "ro_bytes": plan["ro_bytes"],
                        "ptq_acc": ptq, "qat_acc": qat})
        log.info(f"{name}: PTQ {100 * ptq:.2f}%, QAT "
                     f"{'-' if qat is None else f'{100 * qat:.2f}%'}")

    print(f"{args.model} on Fashion-MNIST ({len(test)} test images); float: "
          f"{'checkpoint' if args.float_checkpoint else f'{args.float_epochs} epochs'} on "
          f"{len(train)} images; QAT: {args.qat_epochs} epoch(s) on {len(qat_train)} images "
          f"(PACT init {args.qat_init}); "
          f"allocator budgets FLASH {args.flash:,} B, RAM {args.ram:,} B")
    print(format_table(["scheme", "tensors below 8 bits", "FLASH B", "PTQ %", "QAT %", "s"],
                       rows, align="lllrrr"))
    print(f"wall time {time.time() - t_start:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results},
                                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
