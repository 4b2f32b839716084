"""`tvm-mpq train MODEL --plan PLAN`: float training, then quantization-aware retraining."""

from __future__ import annotations

import sys

from .common import add_model_args, load_graph, log, out, verb_parser

DEFAULT_QAT_EPOCHS = 10
DEFAULT_FLOAT_EPOCHS_ZOO = 10


def register(sub) -> None:
    p = verb_parser(
        sub, "train",
        "retrain a model with the plan's 8/4/2-bit fake quantizers (PACT activations, "
        "learned-clip or per-channel weights, ICN or folded batch-norm) and write it as QDQ "
        "ONNX",
        "  tvm-mpq train mobilenet_v1_0.25_32 --plan plan.json --data fashion-mnist -o q.onnx\n"
        "  tvm-mpq train mobilenet_v1_0.25_32 --plan plan.json -o q.onnx --float-epochs 5 \\\n"
        "      --save-float float.onnx\n"
        "  tvm-mpq train mobilenet_v1_0.25_32 --plan plan.json -o q.onnx \\\n"
        "      --float-checkpoint float.onnx --epochs 10\n"
        "  tvm-mpq train mobilenet_v1_0.25_32 --plan plan.json -o q.onnx --epochs 1 \\\n"
        "      --float-epochs 1 --limit-train 512 --limit-test 256     # a quick try\n"
        "\n"
        "Float phase: Adam, lr 1e-3 (cosine), batch 128; by default 10 epochs for zoo models\n"
        "(synthetic weights) and none for .onnx files or with --float-checkpoint; from the\n"
        "zoo's synthetic weights it starts from PyTorch's default initialization (--float-init).\n"
        "QAT phase: Adam, lr 1e-4 -> 5e-5 (epoch 5) -> 1e-5 (epoch 8), batch-norm statistics\n"
        "frozen after the first epoch. A checkpoint is written after every epoch to\n"
        "<output>.ckpt/ (or --checkpoint-dir); a rerun with the same settings resumes from it.\n")
    add_model_args(p)
    p.add_argument("--plan", required=True, metavar="PLAN.json",
                   help="the precision plan (tvm-mpq plan --json)")
    p.add_argument("--data", default="fashion-mnist", choices=["fashion-mnist"],
                   help="training and test data (default fashion-mnist)")
    p.add_argument("-o", "--output", required=True, metavar="QMODEL.onnx",
                   help="the QDQ ONNX model to write")
    p.add_argument("--epochs", type=int, default=DEFAULT_QAT_EPOCHS,
                   help=f"quantization-aware epochs (default {DEFAULT_QAT_EPOCHS}; 0 = "
                   "post-training calibration only)")
    p.add_argument("--float-epochs", type=int, default=None,
                   help="float training epochs before QAT (default: "
                   f"{DEFAULT_FLOAT_EPOCHS_ZOO} for zoo models, 0 otherwise)")
    p.add_argument("--float-checkpoint", metavar="F.onnx",
                   help="start from the weights of this float ONNX model (same architecture)")
    p.add_argument("--float-init", choices=["auto", "pytorch", "keep"], default="auto",
                   help="the float phase's starting weights: PyTorch's default initialization "
                   "(pytorch) or the model's (keep); auto (default) = pytorch for the zoo's "
                   "synthetic weights, whose He-normal scale trains slower, keep otherwise")
    p.add_argument("--save-float", metavar="F.onnx", help="also write the trained float model")
    p.add_argument("--qat-init", choices=["pact6", "calibrate"], default="pact6",
                   help="initial PACT clips: 6.0 as in the method (default), or calibrated "
                   "on training images (better start for 2-bit activations)")
    p.add_argument("--augment", choices=["crop-flip", "none"], default="crop-flip",
                   help="training-image augmentation: random 2-pixel shifts and horizontal "
                        "flips (default), or none")
    p.add_argument("--distill", type=float, default=0.0, metavar="W",
                   help="QAT: weight of knowledge distillation from the float model "
                        "(0..1, default 0: labels only)")
    p.add_argument("--limit-train", type=int, metavar="N", help="use the first N training images")
    p.add_argument("--limit-test", type=int, metavar="N", help="use the first N test images")
    p.add_argument("--batch-size", type=int, default=128, help="batch size (default 128)")
    p.add_argument("--float-lr", type=float, default=1e-3,
                   help="float phase Adam learning rate, cosine-decayed (default 1e-3)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (default 1; results are reproducible per thread count)")
    p.add_argument("--checkpoint-dir", metavar="DIR", help="default: <output>.ckpt/")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", default=None,
                   help="require a checkpoint to continue from (default: continue when one "
                   "matches)")
    g.add_argument("--no-resume", dest="resume", action="store_false",
                   help="ignore any checkpoint and start over")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import MpqError
    from ..quant.train import TrainConfig, run_training
    from ..quant.workflow import (
        bits_string,
        dataset,
        describe_output,
        load_float_weights,
        load_net_and_plan,
        write_float,
        write_qdq,
    )

    for name in ("epochs", "float_epochs", "batch_size", "threads"):
        v = getattr(args, name)
        if v is not None and (v < 0 or (v == 0 and name in ("batch_size", "threads"))):
            raise MpqError(f"--{name.replace('_', '-')} must be "
                           f"{'positive' if name in ('batch_size', 'threads') else '>= 0'}, "
                           f"got {v}")
    model, graph = load_graph(args)
    net, plan = load_net_and_plan(model, graph, args.plan)
    train = dataset(net, args.data, "train", args.limit_train)
    test = dataset(net, args.data, "test", args.limit_test)
    float_epochs = args.float_epochs
    if args.float_checkpoint:
        load_float_weights(net, args.float_checkpoint)
    if float_epochs is None:
        is_file = args.model.endswith(".onnx")
        float_epochs = 0 if (is_file or args.float_checkpoint) else DEFAULT_FLOAT_EPOCHS_ZOO
    if args.float_lr <= 0:
        raise MpqError(f"--float-lr must be positive, got {args.float_lr}")
    if not 0.0 <= args.distill <= 1.0:
        raise MpqError(f"--distill must be in [0, 1], got {args.distill}")
    cfg = TrainConfig(epochs=args.epochs, float_epochs=float_epochs, batch_size=args.batch_size,
                      float_lr=args.float_lr, qat_init=args.qat_init, float_init=args.float_init,
                      seed=args.seed, limit_train=args.limit_train, limit_test=args.limit_test,
                      threads=args.threads, augment=args.augment, distill=args.distill,
                      progress=sys.stderr.isatty() and not getattr(args, "quiet", False))
    ckpt_dir = args.checkpoint_dir or f"{args.output}.ckpt"
    log.info(f"training {net.name} on {args.data} ({len(train)} train / {len(test)} test "
             f"images): {float_epochs} float + {args.epochs} QAT epochs, plan {plan['scheme']} "
             f"{bits_string(plan)}")
    result = run_training(net, plan, train, test, cfg, ckpt_dir, resume=args.resume)
    if args.save_float:
        write_float(result.float_net, args.save_float)
        log.info(f"wrote float model {args.save_float}")
    qmodel = write_qdq(result.qnet, args.output)
    n = len(test)
    out(f"float accuracy:      {100 * result.float_acc:.2f}% ({args.data} test, {n} images)")
    what = "fake-quant accuracy:" if args.epochs else "calibrated accuracy:"
    out(f"{what} {100 * result.qat_acc:.2f}% ({plan['scheme']}, {args.epochs} QAT epochs)")
    out(describe_output(qmodel, args.output))
    return 0
