"""Float training of `tvm-mpq train` against a plain PyTorch loop (Fashion-MNIST).

Both train MobileNetV1 width 0.25 at 28x28x1 (the zoo's `mobilenet_v1_0.25_28`: stride-1
first conv, 13 depthwise-separable blocks, Conv -> BN -> ReLU6, global pooling, linear)
with the same optimizer (Adam, lr 1e-3, the package's per-epoch cosine to 1/20), batch
size, data order (a permutation seeded by (seed, 0, epoch) per epoch), input scaling
x = (p - 128) / 128 and seed, and print the test top-1 of every epoch side by side:

  run_training   tvm_mpq.quant.train.run_training, what `tvm-mpq train MODEL --plan P
                 --float-epochs N --epochs 0` does (the twin built from the zoo's ONNX,
                 float_init "auto")
  keep           (--also-keep) the same with float_init="keep": training from the zoo's
                 synthetic He-normal weights, as before float_init existed
  plain          an nn.Sequential written here, PyTorch's default initialization and
                 batch-norm (eps 1e-5, momentum 0.1), a textbook training loop

    PYTHONPATH=. .venv/bin/python bench/train_gap.py                 # 3 epochs, 1 thread
    PYTHONPATH=. .venv/bin/python bench/train_gap.py --epochs 1 --limit-train 6000 --also-keep
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import tempfile
import time

import numpy as np
import torch
from torch import nn

from tvm_mpq.data.fashion_mnist import load_fashion_mnist, to_model_input
from tvm_mpq.frontend.graph import build_layer_graph
from tvm_mpq.frontend.loader import validate
from tvm_mpq.models.mobilenet_v1 import BLOCKS, FIRST_CHANNELS
from tvm_mpq.models.zoo import zoo_model
from tvm_mpq.quant.qplan import make_plan
from tvm_mpq.quant.torch_model import from_onnx
from tvm_mpq.quant.train import ImageData, TrainConfig, run_training

MODEL = "mobilenet_v1_0.25_28"
WIDTH = 0.25


def cosine_lr(epoch: int, epochs: int, base: float) -> float:
    """Cosine from `base` (first epoch) to base/20 (last epoch), per epoch (as the package)."""
    if epochs <= 1:
        return base
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * epoch / (epochs - 1))))


def plain_mobilenet_v1(num_classes: int = 10) -> nn.Sequential:
    """MobileNetV1 0.25 for 28x28x1 with PyTorch's default layers and initialization."""
    def cbr(cin, cout, k, stride, groups):
        return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                nn.BatchNorm2d(cout), nn.ReLU6()]

    def ch(c):
        return max(8, int(c * WIDTH))

    c = ch(FIRST_CHANNELS)
    layers = cbr(1, c, 3, 1, 1)                    # stride 1 at 28x28 (as the zoo)
    for cout_full, stride in BLOCKS:
        cout = ch(cout_full)
        layers += cbr(c, c, 3, stride, c) + cbr(c, cout, 1, 1, 1)
        c = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]
    return nn.Sequential(*layers)


def plain_loop(train, test, epochs, batch, lr, seed, log_epoch) -> list[float]:
    torch.manual_seed(seed)
    net = plain_mobilenet_v1()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    xtr = torch.from_numpy(to_model_input(train[0], 28, 1))
    ytr = torch.from_numpy(train[1])
    xte = torch.from_numpy(to_model_input(test[0], 28, 1))
    yte = torch.from_numpy(test[1])
    accs = []
    for epoch in range(epochs):
        for g in opt.param_groups:
            g["lr"] = cosine_lr(epoch, epochs, lr)
        net.train()
        t0 = time.time()
        perm = torch.from_numpy(np.random.default_rng([seed, 0, epoch]).permutation(len(ytr)))
        for i in range(0, len(perm), batch):
            idx = perm[i:i + batch]
            loss = nn.functional.cross_entropy(net(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            correct = sum(int((net(xte[i:i + 500]).argmax(1) == yte[i:i + 500]).sum())
                          for i in range(0, len(yte), 500))
        accs.append(correct / len(yte))
        log_epoch("plain", epoch, accs[-1], time.time() - t0)
    return accs


def package_training(train, test, epochs, batch, lr, seed, threads, float_init) -> list[float]:
    model = validate(zoo_model(MODEL))
    net = from_onnx(model)
    plan = make_plan(build_layer_graph(model), "mixpl")
    cfg = TrainConfig(epochs=0, float_epochs=epochs, batch_size=batch, float_lr=lr, seed=seed,
                      threads=threads, float_init=float_init, progress=False)
    with tempfile.TemporaryDirectory(prefix="mpq_train_gap_") as ckpt:
        res = run_training(net, plan, ImageData(*train, net.input_shape),
                           ImageData(*test, net.input_shape), cfg, ckpt, resume=False)
    return [h["test_acc"] for h in res.history if h["phase"] == "float"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--limit-train", type=int, help="the first N training images")
    p.add_argument("--limit-test", type=int, help="the first N test images")
    p.add_argument("--also-keep", action="store_true",
                   help="also train from the zoo's synthetic weights (float_init='keep')")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    torch.set_num_threads(args.threads)
    train = tuple(a[:args.limit_train] for a in load_fashion_mnist("train"))
    test = tuple(a[:args.limit_test] for a in load_fashion_mnist("test"))

    def log_epoch(what, epoch, acc, s):
        print(f"  {what} epoch {epoch + 1}: test {100 * acc:.2f}% ({s:.0f} s)", file=sys.stderr,
              flush=True)

    common = (train, test, args.epochs, args.batch_size, args.lr, args.seed)
    cols = {}
    t0 = time.time()
    cols["run_training"] = package_training(*common, args.threads, "auto")
    cols["run_training"].append(time.time() - t0)
    if args.also_keep:
        t0 = time.time()
        cols["keep"] = package_training(*common, args.threads, "keep")
        cols["keep"].append(time.time() - t0)
    t0 = time.time()
    cols["plain"] = plain_loop(*common, log_epoch)
    cols["plain"].append(time.time() - t0)

    print(f"{MODEL}, Fashion-MNIST ({len(train[1])} train / {len(test[1])} test images), "
          f"Adam lr {args.lr:g} cosine per epoch, batch {args.batch_size}, seed {args.seed}, "
          f"{args.threads} thread(s)")
    print("epoch  " + "  ".join(f"{k:>12}" for k in cols) + "  plain - run_training")
    for e in range(args.epochs):
        diff = 100 * (cols["plain"][e] - cols["run_training"][e])
        print(f"{e + 1:>5}  " + "  ".join(f"{100 * v[e]:>11.2f}%" for v in cols.values())
              + f"  {diff:+.2f}")
    print("time   " + "  ".join(f"{v[-1]:>11.0f}s" for v in cols.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
