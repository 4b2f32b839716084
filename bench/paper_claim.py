"""The paper's claim at Fashion-MNIST scale: under one small device budget, a larger
MobileNetV1 at mixed precision against the largest MobileNetV1 that fits at 8 bits.

1. For every 28-px zoo MobileNetV1 (x0.25, 0.5, 0.75, 1.0): the 8-bit footprint
   (`memory.allocation.footprint_8bit`) and the MixPC plan for the budget
   (`memory.allocation.allocate`), to show which model is the largest that fits at 8 bits.
2. The small model (default mobilenet_v1_0.25_28; its plan for the budget must be all
   8-bit) and the large one (default mobilenet_v1_0.5_28; its 8-bit version must not fit)
   are trained with the same float schedule from their synthetic zoo weights (same seed),
   then quantization-aware retrained for their plan under the budget. Training is
   `tvm-mpq train` itself (one subprocess per model, `--jobs 2` runs them side by side).
3. Both are evaluated on the Fashion-MNIST test set: float accuracy (the PyTorch twin of
   the float ONNX) and quantized accuracy of the exported QDQ ONNX file (onnx.reference,
   batched, with PyTorch's Conv in place of its slow numpy Conv; `--pure-reference` to
   use onnx.reference alone).
4. With `--firmware`: every QDQ model through `tvm-mpq compile` for the budget, its
   generated and linked sizes, and the integer model's accuracy on the host build of the
   firmware C.

Whatever is given is only evaluated; whatever is missing is trained:

    # the whole experiment (about 35 minutes with 2 cores, see docs/quantization.md)
    .venv/bin/python bench/paper_claim.py --work /tmp/claim --jobs 2 --nice 10 --firmware
    # evaluate given checkpoints only (the shipped QDQ models: about 20 s)
    M=models/fashion_mnist
    .venv/bin/python bench/paper_claim.py \\
        --qdq-small $M/mobilenet_v1_0.25_28.8bit_512kB_64kB.qat.onnx \\
        --qdq-large $M/mobilenet_v1_0.5_28.mixpc_512kB_64kB.qat.onnx
    # optionally a stronger 8-bit baseline: QAT from another float model of the small one
    ... --baseline-float models/fashion_mnist/mobilenet_v1_0.25_28.float.onnx
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from tvm_mpq.errors import BudgetError
from tvm_mpq.frontend.graph import build_layer_graph
from tvm_mpq.frontend.loader import load_model, load_onnx_file, validate
from tvm_mpq.memory.allocation import allocate, footprint_8bit
from tvm_mpq.memory.plan import BITS
from tvm_mpq.quant.qparams import plan_metadata
from tvm_mpq.quant.workflow import bits_string
from tvm_mpq.report.table import format_table
from tvm_mpq.units import format_size, parse_size

ZOO_28 = [f"mobilenet_v1_{w}_28" for w in ("0.25", "0.5", "0.75", "1.0")]


# ------------------------------------------------------------------ which models fit

@dataclass
class Fit:
    model: str
    ro_8bit: int
    rw_8bit: int
    fits_8bit: bool
    plan: dict | None          # the allocator's plan for the budget, None if infeasible
    why_not: str = ""


def graph_of(name: str):
    return build_layer_graph(validate(load_model(name), origin=name))


def fit(name: str, flash: int, ram: int, scheme: str = "mixpc") -> Fit:
    """The 8-bit footprint of `name` and its plan for the budget (or why there is none)."""
    graph = graph_of(name)
    ro, rw = footprint_8bit(graph, scheme)
    try:
        plan, why = allocate(graph, flash, ram, scheme).to_json(), ""
    except BudgetError as e:
        plan, why = None, str(e)
    return Fit(name, ro, rw, ro <= flash and rw <= ram, plan, why)


def bit_counts(plan: dict) -> tuple[dict[int, int], dict[int, int]]:
    """How many weight tensors and how many activation tensors (outputs of the weight
    layers, the logits excluded) sit at 8, 4 and 2 bits."""
    w = {b: sum(1 for e in plan["layers"] if e["w_bits"] == b) for b in BITS}
    acts = [e["out_bits"] for e in plan["layers"][:-1]]
    return w, {b: acts.count(b) for b in BITS}


def counts_str(c: dict[int, int]) -> str:
    return "/".join(str(c.get(b, 0)) for b in (8, 4, 2))


def fit_rows(fits: list[Fit]) -> list[list]:
    rows = []
    for f in fits:
        if f.plan is None:
            mixed = "no: " + f.why_not.split(":")[0]
        elif all(e["w_bits"] == e["out_bits"] == 8 for e in f.plan["layers"]):
            mixed = "yes, all 8-bit"
        else:
            w, a = bit_counts(f.plan)
            mixed = f"yes, w 8/4/2 {counts_str(w)}, act {counts_str(a)}"
        rows.append([f.model, f.ro_8bit, f.rw_8bit, f.fits_8bit, mixed])
    return rows


# ------------------------------------------------------------------ evaluation

def batched(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of a zoo-layout model (float or QDQ, batch 1) that takes any batch: the
    flatten shape becomes [-1, C] and the batch dimension symbolic."""
    from onnx import numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for t in m.graph.initializer:
        if t.name == "flatten.shape":
            a = numpy_helper.to_array(t).copy()
            a[0] = -1
            t.CopyFrom(numpy_helper.from_array(a, t.name))
    for v in list(m.graph.input) + list(m.graph.output):
        v.type.tensor_type.shape.dim[0].dim_param = "N"
    return m


def _torch_conv_op():
    """onnx.reference's Conv, computed by PyTorch (float32, symmetric pads: what the
    tvm-mpq exporter writes); the numpy original takes minutes for 10,000 images."""
    import torch
    import torch.nn.functional as F
    from onnx.reference.op_run import OpRun

    class Conv(OpRun):
        op_domain = ""

        def _run(self, X, W, B=None, auto_pad=None, dilations=None, group=None,
                 kernel_shape=None, pads=None, strides=None):
            pads = list(pads or [0, 0, 0, 0])
            if (auto_pad not in (None, "NOTSET", b"NOTSET") or len(set(pads)) > 1
                    or any(d != 1 for d in (dilations or [1]))):
                raise NotImplementedError("Conv with asymmetric pads, auto_pad or dilation")
            y = F.conv2d(torch.from_numpy(np.ascontiguousarray(X)), torch.from_numpy(W),
                         None if B is None else torch.from_numpy(B),
                         stride=tuple(strides or (1, 1)), padding=pads[0], groups=group or 1)
            return (y.numpy(),)

    return Conv


def qdq_accuracy(model: onnx.ModelProto, x: np.ndarray, labels: np.ndarray,
                 pure: bool = False, batch: int = 500) -> float:
    """Top-1 accuracy of a QDQ model under onnx.reference (Conv by PyTorch unless pure)."""
    from onnx.reference import ReferenceEvaluator

    ev = ReferenceEvaluator(batched(model), new_ops=None if pure else [_torch_conv_op()])
    pred = np.concatenate([np.asarray(ev.run(None, {"input": x[i:i + batch]})[0]).argmax(1)
                           for i in range(0, len(x), batch)])
    return float(np.mean(pred == labels))


def float_accuracy(path: str, limit_test: int | None = None) -> float:
    """Top-1 accuracy of a float ONNX model through its PyTorch twin (as `tvm-mpq train`
    reports it)."""
    from tvm_mpq.quant.torch_model import from_onnx
    from tvm_mpq.quant.train import evaluate
    from tvm_mpq.quant.workflow import dataset

    net = from_onnx(load_onnx_file(path))
    return evaluate(net, dataset(net, "fashion-mnist", "test", limit_test))


def test_inputs(model: onnx.ModelProto, limit: int | None):
    from tvm_mpq.data.fashion_mnist import load_fashion_mnist, to_model_input

    _, c, h, _ = (d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim)
    images, labels = load_fashion_mnist("test")
    images, labels = images[:limit], labels[:limit]
    return to_model_input(images, h, c).astype(np.float32), labels


def firmware(qdq_path: str, flash: int, ram: int, outdir: Path, limit: int | None = None
             ) -> dict:
    """`tvm-mpq compile` the QDQ model for the budget (qemu_m7 firmware, STM32H743 link
    sizes), then run all test images through the host build of the same C: the integer
    model's accuracy, the generated model's sizes and the linked image's."""
    from tvm_mpq.codegen.project import read_metadata
    from tvm_mpq.evaluate import fashion_mnist_inputs, run_batch
    from tvm_mpq.target.build import memory_report

    cmd = [sys.executable, "-m", "tvm_mpq.cli", "-q", "compile", qdq_path, "--flash",
           str(flash), "--ram", str(ram), "-o", str(outdir)]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"tvm-mpq compile {qdq_path} failed: {proc.stderr.strip()}")
    meta = read_metadata(outdir)
    x, labels = fashion_mnist_inputs(meta, limit)
    pred = run_batch(outdir, "host", x).outputs.reshape(len(labels), -1).argmax(1)
    mem = memory_report(outdir / "build" / "qemu_m7" / "mpq_firmware.elf")
    return {"int_acc": float(np.mean(pred == labels)), "images": len(labels),
            "const_bytes": meta["memory"]["const_bytes"],
            "arena_bytes": meta["memory"]["arena_bytes"],
            "firmware_flash": mem["flash_bytes"], "firmware_ram": mem["ram_bytes"]}


# ------------------------------------------------------------------ training

@dataclass
class Row:
    label: str
    model: str
    float_path: str | None
    qdq_path: str | None
    train_argv: list[str] = field(default_factory=list)   # empty: nothing to train
    train_s: float | None = None
    float_acc: float | None = None
    q_acc: float | None = None


def train_argv(model: str, plan_json: str, qdq: str, args, float_ckpt: str | None,
               save_float: str | None) -> list[str]:
    argv = ["train", model, "--plan", plan_json, "-o", qdq, "--epochs", str(args.qat_epochs),
            "--qat-init", args.qat_init, "--threads", str(args.threads), "--seed",
            str(args.seed)] + (["--no-resume"] if args.no_resume else [])
    if float_ckpt:
        argv += ["--float-checkpoint", float_ckpt, "--float-epochs", "0"]
    else:
        argv += ["--float-epochs", str(args.float_epochs)]
    if save_float:
        argv += ["--save-float", save_float]
    for opt in ("limit_train", "limit_test"):
        if getattr(args, opt) is not None:
            argv += [f"--{opt.replace('_', '-')}", str(getattr(args, opt))]
    return argv


def run_jobs(rows: list[Row], jobs: int, nice: int) -> None:
    """`tvm-mpq train` for every row that needs it, `jobs` at a time; each job's log next
    to its QDQ file (.log)."""
    cli = [sys.executable, "-m", "tvm_mpq.cli"]
    pending = [r for r in rows if r.train_argv]
    running: list[tuple[Row, subprocess.Popen, float, object]] = []
    while pending or running:
        while pending and len(running) < jobs:
            r = pending.pop(0)
            log = open(Path(r.qdq_path).with_suffix(".log"), "w")  # noqa: SIM115 (closed below)
            cmd = (["nice", "-n", str(nice)] if nice else []) + cli + r.train_argv
            print("$ tvm-mpq " + " ".join(r.train_argv), file=sys.stderr, flush=True)
            running.append((r, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT),
                            time.time(), log))
        time.sleep(2)
        for item in list(running):
            r, proc, t0, log = item
            if proc.poll() is None:
                continue
            log.close()
            running.remove(item)
            if proc.returncode != 0:
                raise SystemExit(f"training failed ({proc.returncode}): see {log.name}")
            r.train_s = time.time() - t0
            print(f"done in {r.train_s:.0f} s: {r.qdq_path}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ main

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", default="mobilenet_v1_0.25_28",
                   help="the largest model that fits the budget at 8 bits")
    p.add_argument("--large", default="mobilenet_v1_0.5_28",
                   help="a larger model that needs mixed precision to fit")
    p.add_argument("--flash", default="512kB", help="device FLASH budget (default 512kB)")
    p.add_argument("--ram", default="64kB", help="device RAM budget (default 64kB)")
    p.add_argument("--scheme", default="mixpc", choices=["mixpc", "mixpl"])
    p.add_argument("--float-small", help="float ONNX of the small model (skips its float "
                   "training)")
    p.add_argument("--float-large", help="float ONNX of the large model")
    p.add_argument("--qdq-small", help="8-bit QDQ ONNX of the small model (skips its QAT)")
    p.add_argument("--qdq-large", help="mixed-precision QDQ ONNX of the large model")
    p.add_argument("--baseline-float", help="an extra row: the small model at 8 bits, QAT "
                   "from this float ONNX (e.g. a longer-trained one)")
    p.add_argument("--baseline-qdq", help="the extra row's QDQ ONNX (skips its QAT)")
    p.add_argument("--float-epochs", type=int, default=3)
    p.add_argument("--qat-epochs", type=int, default=2)
    p.add_argument("--qat-init", choices=["pact6", "calibrate"], default="calibrate")
    p.add_argument("--threads", type=int, default=1, help="per training job")
    p.add_argument("--jobs", type=int, default=1, help="training jobs at a time")
    p.add_argument("--nice", type=int, default=0, help="run training under nice -n N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-resume", action="store_true",
                   help="retrain even if WORK holds matching checkpoints")
    p.add_argument("--limit-train", type=int, help="training images (quick tries)")
    p.add_argument("--limit-test", type=int, help="test images")
    p.add_argument("--work", help="directory for plans, trained models and logs "
                   "(default: a new temporary directory)")
    p.add_argument("--pure-reference", action="store_true",
                   help="evaluate QDQ models with onnx.reference's own Conv (slow)")
    p.add_argument("--firmware", action="store_true",
                   help="also compile every QDQ model for the budget (tvm-mpq compile, "
                   "qemu_m7) and measure the integer model on all test images (host build "
                   "of the firmware C)")
    p.add_argument("--json", help="also write the results as JSON")
    args = p.parse_args(argv)
    flash, ram = parse_size(args.flash), parse_size(args.ram)
    t_start = time.time()

    # 1. which 28-px models fit the budget, at 8 bits and mixed
    names = sorted(set(ZOO_28) | {args.small, args.large}, key=lambda n: footprint_8bit(
        graph_of(n), args.scheme)[0])
    fits = {n: fit(n, flash, ram, args.scheme) for n in names}
    at8 = [f for f in fits.values() if f.fits_8bit]
    small, large = fits[args.small], fits[args.large]
    print(f"budget: {format_size(flash)} FLASH, {format_size(ram)} RAM; scheme "
          f"{args.scheme}, chain RAM model")
    print(format_table(["model", "8-bit FLASH B", "8-bit RAM B", "fits at 8 bits",
                        f"{args.scheme} plan fits"], fit_rows(list(fits.values())),
                       align="lrrll"))
    largest = max(at8, key=lambda f: f.ro_8bit).model if at8 else None
    print(f"largest model that fits at 8 bits: {largest or 'none'}")
    problems = []
    if not small.fits_8bit:
        problems.append(f"{args.small} does not fit the budget at 8 bits")
    if large.fits_8bit:
        problems.append(f"{args.large} fits at 8 bits: no mixed precision needed")
    if large.plan is None:
        problems.append(f"{args.large} does not fit even mixed: {large.why_not}")
    if problems:
        print("not a valid comparison: " + "; ".join(problems), file=sys.stderr)
        return 2

    # 2. train whatever is not given
    work = Path(args.work or tempfile.mkdtemp(prefix="mpq_claim_"))
    work.mkdir(parents=True, exist_ok=True)
    plan_files = {}
    for f in (small, large):
        plan_files[f.model] = str(work / f"{f.model}.plan.json")
        Path(plan_files[f.model]).write_text(json.dumps(f.plan, indent=1) + "\n")
    tag = f"{flash // 1000}kB_{ram // 1000}kB"
    rows = []
    for label, f, fl, q, kind in (("8-bit", small, args.float_small, args.qdq_small,
                                   f"8bit_{tag}"),
                                  ("mixed", large, args.float_large, args.qdq_large,
                                   f"{args.scheme}_{tag}")):
        r = Row(f"{label} ({f.model})", f.model, fl, q)
        if q is None:
            r.qdq_path = str(work / f"{f.model}.{kind}.qat.onnx")
            if fl is None:
                r.float_path = str(work / f"{f.model}.float.onnx")
            r.train_argv = train_argv(f.model, plan_files[f.model], r.qdq_path, args, fl,
                                      None if fl else r.float_path)
        rows.append(r)
    if args.baseline_float:
        r = Row(f"8-bit ({small.model}, baseline float)", small.model, args.baseline_float,
                args.baseline_qdq)
        if r.qdq_path is None:
            r.qdq_path = str(work / f"{small.model}.8bit_{tag}.baseline.qat.onnx")
            r.train_argv = train_argv(small.model, plan_files[small.model], r.qdq_path, args,
                                      args.baseline_float, None)
        rows.append(r)
    if any(r.train_argv for r in rows):
        print(f"training in {work} ({args.jobs} job(s) at a time, {args.threads} thread(s) "
              "each)", file=sys.stderr)
        run_jobs(rows, args.jobs, args.nice)

    # 3. evaluate
    out_rows, results, fw_rows = [], [], []
    for r in rows:
        t0 = time.time()
        qdq = load_onnx_file(r.qdq_path)
        plan = plan_metadata(qdq)
        if plan is None or plan.get("model") != r.model:
            raise SystemExit(f"{r.qdq_path}: not a tvm-mpq QDQ model of {r.model}")
        all8 = all(e["w_bits"] == e["out_bits"] == 8 for e in plan["layers"])
        if r.label.startswith("8-bit") and not all8:
            raise SystemExit(f"{r.qdq_path}: not an all-8-bit model")
        x, labels = test_inputs(qdq, args.limit_test)
        r.q_acc = qdq_accuracy(qdq, x, labels, args.pure_reference)
        r.float_acc = float_accuracy(r.float_path, args.limit_test) if r.float_path else None
        w, a = bit_counts(plan)
        f = fits[r.model]
        fits_budget = plan["ro_bytes"] <= flash and plan["rw_bytes"] <= ram
        out_rows.append([
            r.label, counts_str(w), counts_str(a),
            f"{plan['ro_bytes']:,} / {f.ro_8bit:,}", f"{plan['rw_bytes']:,} / {f.rw_8bit:,}",
            f.fits_8bit, fits_budget,
            "-" if r.float_acc is None else f"{100 * r.float_acc:.2f}",
            f"{100 * r.q_acc:.2f}", "-" if r.train_s is None else f"{r.train_s / 60:.1f}"])
        if args.firmware:
            fw = firmware(r.qdq_path, flash, ram, work / f"fw.{Path(r.qdq_path).stem}",
                          args.limit_test)
            fw_rows.append([r.label, f"{fw['const_bytes']:,}", f"{fw['arena_bytes']:,}",
                            f"{fw['firmware_flash']:,}", f"{fw['firmware_ram']:,}",
                            f"{100 * r.q_acc:.2f}", f"{100 * fw['int_acc']:.2f}"])
        results.append({"label": r.label, "model": r.model, "float": r.float_path,
                        "qdq": r.qdq_path, "firmware": fw if args.firmware else None,
                        "w_bits": w, "act_bits": a,
                        "ro_bytes": plan["ro_bytes"], "rw_bytes": plan["rw_bytes"],
                        "ro_8bit": f.ro_8bit, "rw_8bit": f.rw_8bit, "fits_8bit": f.fits_8bit,
                        "plan_fits": fits_budget, "bits": bits_string(plan),
                        "float_acc": r.float_acc, "q_acc": r.q_acc, "train_s": r.train_s,
                        "eval_s": time.time() - t0})
    n = len(labels)
    print()
    trained = (f"trained here: {args.float_epochs} float epochs (unless a float model was "
               f"given), {args.qat_epochs} QAT epochs (PACT init {args.qat_init}), seed "
               f"{args.seed}" if any(r.train_argv for r in rows) else "given checkpoints")
    print(f"Fashion-MNIST test accuracy ({n:,} images), budget {flash:,} B FLASH / {ram:,} B "
          f"RAM; {trained}; quantized = the QDQ model (fake-quant, onnx.reference)")
    print(format_table(["model", "w 8/4/2", "act 8/4/2", "FLASH B plan / 8-bit",
                        "RAM B plan / 8-bit", "8-bit fits", "plan fits", "float %",
                        "quantized %", "train min"], out_rows, align="lllrrllrrr"))
    for r, res in zip(rows, results):
        print(f"  {r.label}: {res['bits']}")
    if fw_rows:
        print(f"firmware (tvm-mpq compile --flash {flash} --ram {ram}, qemu_m7 linked with the "
              f"STM32H743's sizes; integer accuracy: host build of the same C, {n:,} test "
              "images)")
        print(format_table(["model", "model FLASH B", "arena B", "image FLASH B",
                            "image RAM B", "fake-quant %", "integer %"], fw_rows,
                           align="lrrrrrr"))
        print("(image RAM = the arena + a 32,768 B stack and heap reserve + runtime data; "
              "image FLASH = the model's constants + runtime and newlib)")
    s, m = results[0], results[1]
    verdict = ("the mixed-precision larger model wins" if m["q_acc"] > s["q_acc"] else
               "the mixed-precision larger model does NOT win")
    print(f"{verdict}: {100 * m['q_acc']:.2f}% vs {100 * s['q_acc']:.2f}% "
          f"({100 * (m['q_acc'] - s['q_acc']):+.2f} points)")
    print(f"wall time {time.time() - t_start:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "flash": flash, "ram": ram,
                                               "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
