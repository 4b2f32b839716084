"""`tvm-mpq demo`: the whole flow on a real data set, on the emulated Cortex-M7.

A MobileNetV1 (width 0.25, 28x28 grayscale input) trained on Fashion-MNIST by this project's
own `tvm-mpq train` ships in models/fashion_mnist/ (float and quantization-aware retrained
checkpoints; models/fashion_mnist/README.md has the commands that reproduce them). The demo
plans its precisions for a small microcontroller budget, converts the retrained QDQ model
into the integer-only graph, compiles firmware for the Cortex-M7 (QEMU mps2-an500 linked
with the STM32H743's sizes), runs test images on it and compares accuracies:
float, fake-quant, host integer build, emulated microcontroller.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from .errors import MpqError
from .fsutil import write_text_atomic

log = logging.getLogger("tvm_mpq")
ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "models" / "fashion_mnist"
MODEL_NAME = "mobilenet_v1_0.25_28"
FLOAT_FILE = MODEL_DIR / f"{MODEL_NAME}.float.onnx"
QAT_FILE = MODEL_DIR / f"{MODEL_NAME}.mixpc_100kB_12kB.qat.onnx"
DEFAULT_FLASH, DEFAULT_RAM = 100_000, 12_000


@dataclass
class DemoResult:
    rows: list[tuple[str, float | None, int]]
    summary: dict


class _Steps:
    def __init__(self, n: int, quiet: bool):
        self.n, self.i, self.quiet, self.t0 = n, 0, quiet, time.time()

    def __call__(self, what: str) -> None:
        self.i += 1
        if not self.quiet:
            print(f"[{self.i}/{self.n}] {what} ({time.time() - self.t0:.0f} s)", flush=True)


def _accuracy_float(model: onnx.ModelProto, x: np.ndarray, labels: np.ndarray) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString())
    name = sess.get_inputs()[0].name
    pred = [int(sess.run(None, {name: x[i:i + 1]})[0].argmax()) for i in range(len(x))]
    return float(np.mean(np.array(pred) == labels))


def _accuracy_qdq(model: onnx.ModelProto, x: np.ndarray, labels: np.ndarray) -> float:
    from onnx.reference import ReferenceEvaluator

    ev = ReferenceEvaluator(model)
    name = model.graph.input[0].name
    pred = [int(np.asarray(ev.run(None, {name: x[i:i + 1]})[0]).argmax()) for i in range(len(x))]
    return float(np.mean(np.array(pred) == labels))


def run_demo(out_dir: str | Path = "build/demo", flash_bytes: int = DEFAULT_FLASH,
             ram_bytes: int = DEFAULT_RAM, n_emulator: int = 1000, n_fake_quant: int = 1000,
             quiet: bool = False) -> DemoResult:
    from . import tvm_adapter as ta
    from .codegen.aot import generate_model
    from .codegen.project import write_project
    from .commands.compile import build_and_report
    from .data.fashion_mnist import load_fashion_mnist, to_model_input
    from .evaluate import fashion_mnist_inputs, run_batch
    from .flow import Budget, embedded_plan, layer_info, plan_model, quantize_model
    from .frontend.graph import build_layer_graph
    from .frontend.loader import load_onnx_file
    from .passes.pipeline import convert

    step = _Steps(7, quiet)
    out_dir = Path(out_dir)
    for f in (FLOAT_FILE, QAT_FILE):
        if not f.is_file():
            raise MpqError(f"the demo checkpoint {f} is missing (see models/fashion_mnist/README.md)")
    step(f"model: {MODEL_NAME} trained on Fashion-MNIST ({FLOAT_FILE.relative_to(ROOT)})")
    float_model = load_onnx_file(str(FLOAT_FILE))
    graph = build_layer_graph(float_model)
    images, labels = load_fashion_mnist("test")
    x_float = to_model_input(images, 28, 1).astype(np.float32)

    step(f"plan: MixPC for {flash_bytes:,} B FLASH / {ram_bytes:,} B RAM")
    budget = Budget(flash_bytes, ram_bytes, "mixpc")
    plan = plan_model(graph, budget)
    big = plan_model(graph, Budget(1 << 40, 1 << 40, "mixpc"))      # the 8-bit model
    fits8 = big.ro_bytes <= flash_bytes and big.rw_bytes <= ram_bytes
    if not quiet:
        print(f"      8-bit model: {big.ro_bytes:,} B FLASH, {big.rw_bytes:,} B RAM -> "
              f"{'fits' if fits8 else 'does NOT fit'}")
        print(f"      mixed plan:  {plan.ro_bytes:,} B FLASH, {plan.rw_bytes:,} B RAM -> fits;"
              f" {plan.bits_string()}")

    step("quantize: the quantization-aware retrained model for this plan")
    qat = load_onnx_file(str(QAT_FILE))
    shipped = embedded_plan(qat)
    same = shipped is not None and [(e["in_bits"], e["out_bits"], e["w_bits"])
                                    for e in shipped["layers"]] == \
        [(e.in_bits, e.out_bits, e.w_bits) for e in plan.layers]
    if same:
        qdq, how = qat, f"retrained checkpoint {QAT_FILE.name}"
    else:
        from .flow import calibration_inputs

        qdq = quantize_model(float_model, graph, plan.to_json(),
                             calibration_inputs(float_model, "fashion-mnist", 512))
        how = "post-training calibration (the shipped retrained model is for 100 kB / 12 kB)"
    if not quiet:
        print(f"      using {how}")

    n = min(n_emulator, len(labels))
    step(f"convert to the integer-only graph; run it on the host with TVM (llvm), {n} images")
    im = convert(qdq, origin="demo")
    run = ta.build_relax_host(im.mod)
    xq = im.quantize_input(x_float[:n])
    tvm_pred = np.array([int(np.asarray(run(xq[i:i + 1])).argmax()) for i in range(n)])

    step(f"compile firmware for the Cortex-M7 (qemu_m7, STM32H743 sizes) into {out_dir}")
    gen = generate_model(im.mod, MODEL_NAME, layer_info(graph))
    meta = write_project(out_dir, gen, board="qemu_m7", model_name=MODEL_NAME,
                         qdq_bytes=qdq.SerializeToString(), plan_json=plan.to_json(),
                         extra={"budget": {"flash_bytes": flash_bytes, "ram_bytes": ram_bytes,
                                           "scheme": "mixpc"},
                                "plan_prediction": {"ro_bytes": plan.ro_bytes,
                                                    "rw_bytes": plan.rw_bytes}})
    report = build_and_report(out_dir, "qemu_m7", meta)
    if not quiet:
        print("      " + report.replace("\n", "\n      "))

    step(f"run the firmware: all {len(labels):,} test images on the host build of the same C, "
         f"{n} on the emulated Cortex-M7 (one QEMU run, exact instruction counts)")
    xe, le = fashion_mnist_inputs(meta, None)
    host_pred = run_batch(out_dir, "host", xe).outputs.reshape(len(le), -1).argmax(1)
    acc_host = float(np.mean(host_pred == le))
    res = run_batch(out_dir, "qemu_m7", xe[:n], count_instructions=True)
    emu_pred = res.outputs.reshape(n, -1).argmax(1)
    acc_emu = float(np.mean(emu_pred == le[:n]))
    same_as_host = bool(np.array_equal(emu_pred, host_pred[:n])
                        and np.array_equal(emu_pred, tvm_pred))

    nf = min(n_fake_quant, len(labels))
    step(f"reference accuracies: float (onnxruntime, 10,000 images), fake-quant "
         f"(onnx.reference, {nf} images)")
    acc_float = _accuracy_float(float_model, x_float, labels)
    acc_fq = _accuracy_qdq(qdq, x_float[:nf], labels[:nf])
    acc_float_n = float(np.mean(_pred_float(float_model, x_float[:n]) == labels[:n]))
    acc_host_n = float(np.mean(host_pred[:n] == labels[:n]))

    from .target.build import memory_report

    mem = memory_report(out_dir / "build" / "qemu_m7" / "mpq_firmware.elf")
    insn = (res.instructions_total or 0) / n
    macs = graph.total_macs
    rows = [("float (onnxruntime)", acc_float, len(labels)),
            ("fake-quant QDQ (onnx.reference)", acc_fq, nf),
            ("integer, host build of the firmware C", acc_host, len(labels)),
            (f"float, first {n}", acc_float_n, n),
            (f"integer, host TVM build (llvm), first {n}", float(np.mean(tvm_pred == labels[:n])), n),
            (f"integer, host build of the firmware C, first {n}", acc_host_n, n),
            (f"integer, emulated Cortex-M7, first {n}", acc_emu, n)]
    summary = {"model": MODEL_NAME, "budget": {"flash_bytes": flash_bytes, "ram_bytes": ram_bytes},
               "plan": plan.bits_string(), "eight_bit_fits": fits8,
               "eight_bit": {"ro_bytes": big.ro_bytes, "rw_bytes": big.rw_bytes},
               "model_flash_bytes": gen.const_bytes, "arena_bytes": gen.memory.arena_bytes,
               "firmware": mem, "emulator_equals_host": same_as_host,
               "instructions_per_inference": insn, "macs": macs,
               "accuracy": {r[0]: r[1] for r in rows},
               "report": str(out_dir / "report.html")}
    write_text_atomic(out_dir / "demo_summary.json", json.dumps(summary, indent=2) + "\n")
    from .evaluate import profile_layers
    from .report.html import render_report

    profile_layers(out_dir, xe[:1])
    write_text_atomic(out_dir / "report.html", render_report(out_dir))
    if not quiet:
        _print_summary(summary, rows, plan, big, gen, mem, insn, macs, same_as_host, n)
    return DemoResult(rows, summary)


def _pred_float(model, x):
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString())
    name = sess.get_inputs()[0].name
    return np.array([int(sess.run(None, {name: x[i:i + 1]})[0].argmax()) for i in range(len(x))])


def _print_summary(summary, rows, plan, big, gen, mem, insn, macs, same, n) -> None:
    from .report.table import format_table

    print()
    print(f"== tvm-mpq demo: {summary['model']} on Fashion-MNIST, budget "
          f"{summary['budget']['flash_bytes']:,} B FLASH / {summary['budget']['ram_bytes']:,} B RAM")
    print(format_table(["accuracy", "top-1", "images"],
                       [[r[0], f"{100 * r[1]:.2f}%", r[2]] for r in rows], align="lrr"))
    print(f"emulated Cortex-M7 == host integer builds (C and TVM) on all {n} images: "
          f"{'yes' if same else 'NO'}")
    print(format_table(
        ["memory", "8-bit model", "mixed (plan)", "generated", "budget"],
        [["FLASH (weights+params)", big.ro_bytes, plan.ro_bytes, gen.const_bytes,
          summary["budget"]["flash_bytes"]],
         ["RAM (activations)", big.rw_bytes, plan.rw_bytes, gen.memory.arena_bytes,
          summary["budget"]["ram_bytes"]]], align="lrrrr"))
    print(f"8-bit model fits the budget: {'yes' if summary['eight_bit_fits'] else 'no'}; "
          f"mixed precision fits: yes ({plan.bits_string()})")
    print(f"firmware image: {mem['flash_bytes']:,} B FLASH, {mem['ram_bytes']:,} B RAM "
          "(with runtime, newlib, stack and heap)")
    print(f"{insn:,.0f} executed instructions per inference for {macs:,} MACs "
          f"({insn / max(1, macs):.2f} per MAC; instructions, not cycles)")
    print(f"report: {summary['report']}")
