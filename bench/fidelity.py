"""Fidelity of the integer-only model to the fake-quant QDQ model it was converted from,
on the Fashion-MNIST test set (issue: integer-only graph):

  - top-1 agreement between the integer model (TVM host build) and the QDQ model
    (onnx.reference, an independent evaluator that runs INT4/INT2 too);
  - accuracy of both;
  - per-layer error: each integer layer fed the QDQ model's own input tensor,
    fraction of output elements within 1 LSB.

    .venv/bin/python bench/fidelity.py [QMODEL.onnx] [--images N] [--layer-images M]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "models/fashion_mnist/mobilenet_v1_0.25_28.mixpc_100kB_12kB.qat.onnx"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", nargs="?", default=str(DEFAULT))
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--layer-images", type=int, default=50)
    args = ap.parse_args()

    from onnx.reference import ReferenceEvaluator

    from tvm_mpq import tvm_adapter as ta
    from tvm_mpq.data.fashion_mnist import load_fashion_mnist, to_model_input
    from tvm_mpq.passes.pipeline import convert
    from tvm_mpq.reference.fidelity import per_layer_fidelity

    qdq = onnx.load(args.model)
    im = convert(qdq)
    _, c, h, _ = im.graph.input_shape
    images, labels = load_fashion_mnist("test")
    n = min(args.images, len(labels))
    x = to_model_input(images[:n], h, c).astype(np.float32)
    labels = labels[:n]
    t = time.time()
    run = ta.build_relax_host(im.mod)
    xq = im.quantize_input(x)
    int_pred = np.array([int(np.asarray(run(xq[i:i + 1])).argmax()) for i in range(n)])
    t_int = time.time() - t
    t = time.time()
    ev = ReferenceEvaluator(qdq)
    name = qdq.graph.input[0].name
    fq_pred = np.array([int(np.asarray(ev.run(None, {name: x[i:i + 1]})[0]).argmax())
                        for i in range(n)])
    t_fq = time.time() - t
    within = total = exact = 0
    worst = []
    for i in range(min(args.layer_images, n)):
        for f in per_layer_fidelity(qdq, im.mod, x[i:i + 1]):
            within += f.within_1
            total += f.n
            exact += int(f.max_abs == 0)
            worst.append((f.fraction_within_1, f.name))
    agree = float(np.mean(int_pred == fq_pred))
    acc_int = float(np.mean(int_pred == labels))
    acc_fq = float(np.mean(fq_pred == labels))
    print(f"model: {args.model}")
    print("| metric | value | target |")
    print("|---|---:|---|")
    print(f"| top-1 agreement integer vs fake-quant ({n} images) | {100 * agree:.2f}% | >= 99.5% |")
    print(f"| accuracy fake-quant (onnx.reference) | {100 * acc_fq:.2f}% | |")
    print(f"| accuracy integer (TVM host build) | {100 * acc_int:.2f}% | within 0.3 points |")
    print(f"| accuracy difference | {100 * (acc_int - acc_fq):+.2f} points | |")
    print(f"| per-layer elements within 1 LSB ({min(args.layer_images, n)} images) | "
          f"{100 * within / max(1, total):.3f}% | >= 99% |")
    print(f"| worst layer | {100 * min(worst)[0]:.3f}% ({min(worst)[1]}) | |")
    print(f"(integer: {t_int:.0f} s, onnx.reference: {t_fq:.0f} s)")
    ok = agree >= 0.995 and abs(acc_int - acc_fq) <= 0.003 and within / max(1, total) >= 0.99
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
