"""Float training, then quantization-aware retraining (QAT), with checkpoints.

`run_training` is the whole job behind `tvm-mpq train`:

1. float phase (`float_epochs`, may be 0): Adam, lr 1e-3 with a cosine decay, batch 128;
   when it starts from the zoo's synthetic weights, from PyTorch's default initialization
   instead (`TrainConfig.float_init`, see there why);
2. QAT phase (`epochs`): the plan's fake quantizers on a copy of the float model, Adam
   with the method's schedule lr 1e-4 -> 5e-5 (epoch 5) -> 1e-5 (epoch 8), weight decay
   1e-4 on the PACT clips only; batch-norm statistics frozen after the first QAT epoch;
   the logit scale re-calibrated at the end of every epoch.

After every epoch the state (phase, epoch, float and QAT weights, optimizer) goes to
`<ckpt_dir>/state.pt` atomically; a later run with the same settings continues from it.
Shuffling is seeded by (seed, phase, epoch), so a resumed run takes the same batches as an
uninterrupted one.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data.fashion_mnist import to_model_input
from ..errors import MpqError
from ..fsutil import write_bytes_atomic
from .calibrate import calibrate, calibrate_logits
from .fake_quant import configure, param_groups
from .torch_model import TorchNet

log = logging.getLogger("tvm_mpq")

CKPT_FILE = "state.pt"
DISTILL_T = 2.0
CKPT_VERSION = 1


@dataclass
class TrainConfig:
    epochs: int = 10               # QAT epochs
    float_epochs: int = 0
    batch_size: int = 128
    float_lr: float = 1e-3
    qat_lr: float = 1e-4
    seed: int = 0
    limit_train: int | None = None
    limit_test: int | None = None
    threads: int = 1
    logit_calib_samples: int = 1024
    qat_init: str = "pact6"        # "pact6": clips a = 6.0; "calibrate": PTQ calibration first
    # The float phase's starting weights (ignored when float_epochs == 0):
    #   "auto"    = "pytorch" if the net holds exactly the zoo's synthetic weights of its name
    #               (`is_zoo_synthetic`), else "keep";
    #   "pytorch" = re-initialize as PyTorch initializes fresh layers (TorchNet.reset_parameters,
    #               seeded with `seed`);
    #   "keep"    = train from the weights the net has.
    # Why: the zoo's synthetic weights (models/mobilenet_v1.py) are He-normal, std
    # sqrt(2/fan_in), 2.45x PyTorch's default std 1/sqrt(3 fan_in). Batch-norm makes every conv
    # scale-invariant, so only the weights' direction matters, and Adam's steps have a fixed
    # size: 2.45x larger weights turn 2.45x more slowly, as with a 2.45x smaller learning rate.
    # Measured (bench/train_gap.py: Fashion-MNIST, mobilenet_v1_0.25_28, 3 float epochs, seed
    # 0, 1 thread): 78.94% from the zoo's weights, 83.61% from PyTorch's initialization, 83.73%
    # for a plain PyTorch nn.Sequential loop; the zoo's weights shrunk to PyTorch's std train
    # as the plain loop (1 epoch: 79.30%, both), so it is their scale. The zoo keeps its
    # weights (the generated ONNX and the C compiled from it are pinned by tests).
    float_init: str = "auto"
    # Augmentation of the training images (both phases): "crop-flip" = a random shift of up to
    # 2 pixels (zero padding, then a random crop) and a horizontal flip with probability 1/2,
    # drawn per (seed, phase, epoch); "none" = the images as they are.
    augment: str = "crop-flip"
    # QAT: knowledge distillation from the float model, loss = (1 - distill) * CE(labels) +
    # distill * T^2 * KL(teacher || student) at temperature T = 2 (0: labels only).
    distill: float = 0.0
    progress: bool = True


@dataclass
class TrainResult:
    float_net: TorchNet
    qnet: TorchNet
    float_acc: float
    qat_acc: float | None
    history: list[dict] = field(default_factory=list)
    resumed_from: str | None = None


def qat_lr(epoch: int, base: float = 1e-4) -> float:
    """The method's schedule: base, base/2 from epoch 5, base/10 from epoch 8."""
    return base if epoch < 5 else base / 2 if epoch < 8 else base / 10


def float_lr(epoch: int, epochs: int, base: float = 1e-3) -> float:
    """Cosine decay from `base` (epoch 0) towards base/20 (last epoch)."""
    if epochs <= 1:
        return base
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * epoch / (epochs - 1))))


def is_zoo_synthetic(net: TorchNet) -> bool:
    """Whether `net` holds exactly the synthetic weights the zoo generates for its name
    (and its class and input channel counts)."""
    from ..models.zoo import is_zoo_name, zoo_model
    from .torch_model import from_onnx

    if not is_zoo_name(net.name):
        return False
    try:
        ref = from_onnx(zoo_model(net.name, net.num_classes, net.input_shape[0]))
    except (MpqError, ValueError):
        return False
    mine, zoo = net.state_dict(), ref.state_dict()
    return mine.keys() == zoo.keys() and all(
        mine[k].shape == zoo[k].shape and torch.equal(mine[k], zoo[k]) for k in mine)


def init_float_weights(net: TorchNet, cfg: TrainConfig) -> bool:
    """Apply `cfg.float_init` to `net` before the float phase; True if re-initialized."""
    if cfg.float_init not in ("auto", "pytorch", "keep"):
        raise ValueError(f"float_init {cfg.float_init!r}")
    if cfg.float_epochs <= 0 or cfg.float_init == "keep":
        return False
    if cfg.float_init == "auto" and not is_zoo_synthetic(net):
        return False
    net.reset_parameters(cfg.seed)
    return True


def set_determinism(seed: int, threads: int) -> None:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(max(1, threads))


class ImageData:
    """uint8 images + labels, converted to the model input layout per batch."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, input_shape, limit=None):
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        self.images, self.labels = images, labels
        self.channels, self.resolution = int(input_shape[0]), int(input_shape[1])

    def __len__(self) -> int:
        return len(self.labels)

    def inputs(self, idx, rng: np.random.Generator | None = None,
               augment: str = "none") -> torch.Tensor:
        images = self.images[idx]
        if rng is not None and augment == "crop-flip":
            images = crop_flip(images, rng)
        elif augment not in ("none", "crop-flip"):
            raise ValueError(f"augment {augment!r}")
        return torch.from_numpy(to_model_input(images, self.resolution, self.channels))

    def targets(self, idx) -> torch.Tensor:
        return torch.from_numpy(self.labels[idx])


def crop_flip(images: np.ndarray, rng: np.random.Generator, pad: int = 2) -> np.ndarray:
    """Random shifts of up to `pad` pixels (zero padding, the background of the data sets
    here) and horizontal flips with probability 1/2, per image; uint8 (N, H, W[, C])."""
    n, h, w = images.shape[:3]
    padded = np.zeros((n, h + 2 * pad, w + 2 * pad) + images.shape[3:], images.dtype)
    padded[:, pad:pad + h, pad:pad + w] = images
    dy, dx = rng.integers(0, 2 * pad + 1, n), rng.integers(0, 2 * pad + 1, n)
    flip = rng.random(n) < 0.5
    out = np.empty_like(images)
    for i in range(n):
        crop = padded[i, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out[i] = crop[:, ::-1] if flip[i] else crop
    return out


@torch.no_grad()
def evaluate(net: TorchNet, data: ImageData, batch_size: int = 500) -> float:
    """Top-1 accuracy (0..1) of `net` in evaluation mode."""
    was_training = net.training
    net.eval()
    correct = 0
    try:
        for i in range(0, len(data), batch_size):
            idx = np.arange(i, min(i + batch_size, len(data)))
            correct += int((net(data.inputs(idx)).argmax(1) == data.targets(idx)).sum())
    finally:
        net.train(was_training)
    return correct / max(1, len(data))


def train_epoch(net, opt, data: ImageData, batch_size: int, seed_key: list[int], desc: str,
                progress: bool = True, augment: str = "none", teacher=None,
                distill: float = 0.0) -> tuple[float, float]:
    """One epoch over a seeded permutation; returns (mean loss, train accuracy). With a
    `teacher` and `distill` > 0 the loss mixes in the distillation term (TrainConfig)."""
    net.train()
    rng = np.random.default_rng(seed_key)
    perm = rng.permutation(len(data))
    aug_rng = np.random.default_rng([*seed_key, 1])
    total_loss, correct, seen = 0.0, 0, 0
    bar = tqdm(range(0, len(perm), batch_size), desc=desc, leave=False, file=sys.stderr,
               disable=not progress, unit="batch")
    for i in bar:
        idx = perm[i:i + batch_size]
        x, y = data.inputs(idx, aug_rng, augment), data.targets(idx)
        logits = net(x)
        loss = F.cross_entropy(logits, y)
        if teacher is not None and distill > 0:
            with torch.no_grad():
                soft = F.softmax(teacher(x) / DISTILL_T, dim=1)
            kd = F.kl_div(F.log_softmax(logits / DISTILL_T, dim=1), soft,
                          reduction="batchmean") * DISTILL_T ** 2
            loss = (1.0 - distill) * loss + distill * kd
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total_loss += loss.item() * len(idx)
        correct += int((logits.argmax(1) == y).sum())
        seen += len(idx)
        bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{100.0 * correct / seen:.2f}%")
    return total_loss / max(1, seen), correct / max(1, seen)


# ---------------------------------------------------------------- checkpoints

def fingerprint(net: TorchNet, plan: dict, cfg: TrainConfig, extra: str = "") -> str:
    """What a checkpoint must agree with to be resumed (not the epoch counts)."""
    h = hashlib.sha256()
    for t in net.state_dict().values():      # the starting weights
        h.update(t.detach().cpu().numpy().tobytes())
    keys = {k: v for k, v in asdict(cfg).items()
            if k in ("batch_size", "float_lr", "qat_lr", "seed", "limit_train", "qat_init",
                     "augment", "distill")}
    h.update(json.dumps([net.name, plan, keys, extra], sort_keys=True).encode())
    return h.hexdigest()[:16]


def save_checkpoint(ckpt_dir: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes_atomic(ckpt_dir / CKPT_FILE, buf.getvalue())


def load_checkpoint(ckpt_dir: Path) -> dict | None:
    path = ckpt_dir / CKPT_FILE
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - torch raises many types on a bad file
        raise MpqError(f"checkpoint '{path}' is unreadable ({type(e).__name__})",
                       hint="delete it or pass --no-resume") from None


# ---------------------------------------------------------------- the job

def run_training(net: TorchNet, plan: dict, train: ImageData, test: ImageData, cfg: TrainConfig,
                 ckpt_dir: str | os.PathLike, resume: bool | None = None,
                 extra_fingerprint: str = "") -> TrainResult:
    """Float phase then QAT phase on `net` (float, modified in place by the float phase).

    With float epochs, the float phase starts from PyTorch's default initialization when
    `net` holds the zoo's synthetic weights (cfg.float_init "auto", the default), from
    `net`'s weights otherwise; the fingerprint covers these starting weights.

    resume: None = continue when a matching checkpoint exists; True = require one;
    False = ignore (and overwrite) any checkpoint."""
    set_determinism(cfg.seed, cfg.threads)
    if init_float_weights(net, cfg):
        log.info(f"float phase: PyTorch's default initialization (seed {cfg.seed}) instead of "
                 "the zoo's synthetic weights (float_init)")
    ckpt_dir = Path(ckpt_dir)
    fp = fingerprint(net, plan, cfg, extra_fingerprint)
    state = None if resume is False else load_checkpoint(ckpt_dir)
    if resume and state is None:
        raise MpqError(f"--resume: no checkpoint in '{ckpt_dir}'")
    if state is not None and (state.get("version") != CKPT_VERSION
                              or state.get("fingerprint") != fp):
        raise MpqError(f"the checkpoint in '{ckpt_dir}' was made from another model, plan or "
                       "training settings", hint="pass --no-resume to start over, or another "
                       "--checkpoint-dir")
    history: list[dict] = list(state["history"]) if state else []
    resumed_from = None
    if state is not None:
        resumed_from = f"{state['phase']} epoch {state['epoch'] + 1}"
        log.info(f"resuming from {ckpt_dir / CKPT_FILE} ({resumed_from} done)")

    def save(phase, epoch, model_state, opt, float_state, float_acc=None):
        save_checkpoint(ckpt_dir, {
            "version": CKPT_VERSION, "fingerprint": fp, "phase": phase, "epoch": epoch,
            "model": model_state, "opt": opt.state_dict(), "float": float_state,
            "float_acc": float_acc, "history": history})

    # -- float phase
    if state is not None:
        net.load_state_dict(state["float"])
    opt = torch.optim.Adam(net.parameters(), lr=cfg.float_lr)
    start = 0
    if state is not None and state["phase"] == "float":
        opt.load_state_dict(state["opt"])
        start = state["epoch"] + 1
    elif state is not None:         # already in the QAT phase
        start = cfg.float_epochs
    for epoch in range(start, cfg.float_epochs):
        lr = float_lr(epoch, cfg.float_epochs, cfg.float_lr)
        for g in opt.param_groups:
            g["lr"] = lr
        t0 = time.time()
        loss, acc = train_epoch(net, opt, train, cfg.batch_size, [cfg.seed, 0, epoch],
                                f"float {epoch + 1}/{cfg.float_epochs}", cfg.progress,
                                cfg.augment)
        test_acc = evaluate(net, test)
        history.append({"phase": "float", "epoch": epoch, "lr": lr, "loss": loss,
                        "train_acc": acc, "test_acc": test_acc, "s": time.time() - t0})
        log.info(f"float epoch {epoch + 1}/{cfg.float_epochs}: loss {loss:.4f}, train "
                 f"{100 * acc:.2f}%, test {100 * test_acc:.2f}% (lr {lr:.2g}, "
                 f"{time.time() - t0:.0f} s)")
        save("float", epoch, net.state_dict(), opt, net.state_dict())
    float_state = copy.deepcopy(net.state_dict())
    float_acc = state["float_acc"] if state is not None and state.get("float_acc") is not None \
        else evaluate(net, test)

    calib_idx = np.arange(min(cfg.logit_calib_samples, len(train)))
    qnet = copy.deepcopy(net)
    configure(qnet, plan)
    if cfg.epochs <= 0:             # no retraining: post-training calibration only
        calibrate(qnet, train.inputs(calib_idx))
        return TrainResult(net, qnet, float_acc, evaluate(qnet, test), history, resumed_from)

    # -- QAT phase
    if cfg.qat_init == "calibrate":  # clips from data instead of 6.0 (helps 2-bit activations)
        calibrate(qnet, train.inputs(calib_idx))
    elif cfg.qat_init != "pact6":
        raise ValueError(f"qat_init {cfg.qat_init!r}")
    opt = torch.optim.Adam(param_groups(qnet, cfg.qat_lr))
    teacher = None
    if cfg.distill > 0:
        teacher = copy.deepcopy(net).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    start = 0
    if state is not None and state["phase"] == "qat":
        qnet.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start = state["epoch"] + 1
        if start >= 1:
            qnet.freeze_bn()
    qat_acc = None
    for epoch in range(start, cfg.epochs):
        lr = qat_lr(epoch, cfg.qat_lr)
        for g in opt.param_groups:
            g["lr"] = lr
        t0 = time.time()
        loss, acc = train_epoch(qnet, opt, train, cfg.batch_size, [cfg.seed, 1, epoch],
                                f"QAT {epoch + 1}/{cfg.epochs}", cfg.progress, cfg.augment,
                                teacher, cfg.distill)
        if epoch == 0:
            qnet.freeze_bn()        # BN statistics frozen after the first QAT epoch
        calibrate_logits(qnet, train.inputs(calib_idx))
        qat_acc = evaluate(qnet, test)
        history.append({"phase": "qat", "epoch": epoch, "lr": lr, "loss": loss,
                        "train_acc": acc, "test_acc": qat_acc, "s": time.time() - t0})
        log.info(f"QAT epoch {epoch + 1}/{cfg.epochs}: loss {loss:.4f}, train {100 * acc:.2f}%, "
                 f"test {100 * qat_acc:.2f}% (lr {lr:.2g}, {time.time() - t0:.0f} s)")
        save("qat", epoch, qnet.state_dict(), opt, float_state, float_acc)
    if qat_acc is None:             # everything was in the checkpoint already
        qat_acc = evaluate(qnet, test)
    return TrainResult(net, qnet, float_acc, qat_acc, history, resumed_from)
