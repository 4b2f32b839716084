"""`tvm-mpq quantize MODEL --plan PLAN`: post-training quantization to a QDQ ONNX model."""

from __future__ import annotations

from .common import add_model_args, load_graph, log, out, verb_parser

DEFAULT_SAMPLES = 512


def register(sub) -> None:
    p = verb_parser(
        sub, "quantize",
        "quantize a float model with the plan's precisions by post-training calibration "
        "(no retraining) and write it as QDQ ONNX",
        "  tvm-mpq quantize mobilenet_v1_0.25_32 --plan plan.json -o q.onnx\n"
        "  tvm-mpq quantize trained.onnx --plan plan.json --calib fashion-mnist "
        "--num-samples 1024 -o q.onnx\n"
        "  tvm-mpq quantize mobilenet_v1_1.0_224 --plan plan.json --calib synthetic -o q.onnx\n"
        "  tvm-mpq quantize my_model.onnx --plan plan.json --calib samples.npy -o q.onnx\n"
        "\n"
        "--calib: fashion-mnist (training images), synthetic (random images: for footprint\n"
        "and latency work only) or an .npy file of model inputs [N, C, H, W] (float, x =\n"
        "(p - 128) / 128) or of raw 28x28 uint8 images [N, 28, 28].\n"
        "Activation clips: the --percentile of each layer's values; weights: min/max (per\n"
        "layer or per channel); logits: max |logit|. Accuracy is measured on the Fashion-MNIST\n"
        "test set when the model fits it, else as top-1 agreement with the float model.\n")
    add_model_args(p)
    p.add_argument("--plan", required=True, metavar="PLAN.json",
                   help="the precision plan (tvm-mpq plan --json)")
    p.add_argument("--calib", default="fashion-mnist", metavar="fashion-mnist|synthetic|X.npy",
                   help="calibration data (default fashion-mnist)")
    p.add_argument("--num-samples", type=int, default=DEFAULT_SAMPLES, metavar="N",
                   help=f"calibration samples (default {DEFAULT_SAMPLES})")
    p.add_argument("--percentile", type=float, default=None, metavar="P",
                   help="activation clip percentile (default 99.99; 100 = max)")
    p.add_argument("--limit-test", type=int, metavar="N",
                   help="measure accuracy on the first N test images (default all)")
    p.add_argument("--seed", type=int, default=0, help="seed of synthetic samples (default 0)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    p.add_argument("-o", "--output", required=True, metavar="QMODEL.onnx",
                   help="the QDQ ONNX model to write")
    p.set_defaults(func=run)


def _calibration_inputs(args, net):
    import numpy as np

    from ..data.fashion_mnist import to_model_input
    from ..errors import InputError, MpqError
    from ..quant.calibrate import synthetic_inputs
    from ..quant.workflow import dataset

    n = args.num_samples
    if args.calib == "synthetic":
        log.warning("warning: synthetic calibration (random images): the quantization ranges "
                    "fit noise, not data; use this model for footprint and latency work only")
        return synthetic_inputs(net, n, args.seed)
    if args.calib == "fashion-mnist":
        data = dataset(net, "fashion-mnist", "train", n)
        return data.inputs(np.arange(len(data))).numpy()
    if not args.calib.endswith(".npy"):
        raise MpqError(f"--calib '{args.calib}': expected fashion-mnist, synthetic or an .npy "
                       "file")
    try:
        x = np.load(args.calib, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"calibration file '{args.calib}' not found") from None
    except (OSError, ValueError) as e:
        raise InputError(f"calibration file '{args.calib}' is not a valid .npy array: "
                         f"{' '.join(str(e).split())[:120]}") from None
    if x.ndim == 3 and x.shape[1:] == (28, 28) and x.dtype == np.uint8:
        x = to_model_input(x, net.input_shape[1], net.input_shape[0])
    if x.ndim != 4 or tuple(x.shape[1:]) != net.input_shape or not np.issubdtype(
            x.dtype, np.floating):
        raise InputError(f"calibration file '{args.calib}': float array of shape "
                         f"{list(x.shape)} ({x.dtype}); the model takes [N, "
                         f"{', '.join(map(str, net.input_shape))}] float inputs")
    if not np.all(np.isfinite(x)):
        raise InputError(f"calibration file '{args.calib}' contains NaN or Inf")
    return x[:n].astype(np.float32)


def run(args) -> int:
    import copy

    import torch

    from ..errors import MpqError
    from ..quant.calibrate import DEFAULT_PERCENTILE, calibrate
    from ..quant.fake_quant import configure
    from ..quant.train import evaluate
    from ..quant.workflow import (
        bits_string,
        check_dataset_fit,
        dataset,
        describe_output,
        load_net_and_plan,
        write_qdq,
    )

    if args.num_samples <= 0:
        raise MpqError(f"--num-samples must be positive, got {args.num_samples}")
    if args.threads <= 0:
        raise MpqError(f"--threads must be positive, got {args.threads}")
    pct = DEFAULT_PERCENTILE if args.percentile is None else args.percentile
    if not 0 < pct <= 100:
        raise MpqError(f"--percentile must be in (0, 100], got {pct}")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    model, graph = load_graph(args)
    net, plan = load_net_and_plan(model, graph, args.plan)
    x = _calibration_inputs(args, net)
    net.eval()
    qnet = copy.deepcopy(net)
    configure(qnet, plan)
    calibrate(qnet, x, percentile=pct)
    qnet.eval()
    qmodel = write_qdq(qnet, args.output)
    log.info(f"calibrated {net.name} on {len(x)} {args.calib} samples (percentile {pct:g}); "
             f"plan {plan['scheme']} {bits_string(plan)}")
    try:
        check_dataset_fit(net, "fashion-mnist")
        test = dataset(net, "fashion-mnist", "test", args.limit_test)
    except MpqError as e:
        log.info(f"no Fashion-MNIST accuracy: {e.one_line()}")
        test = None
    if test is not None:
        where = f"(fashion-mnist test, {len(test)} images)"
        out(f"float accuracy:      {100 * evaluate(net, test):.2f}% {where}")
        out(f"fake-quant accuracy: {100 * evaluate(qnet, test):.2f}% {where}")
    else:
        with torch.no_grad():
            xt = torch.from_numpy(x)
            agree = float((net(xt).argmax(1) == qnet(xt).argmax(1)).float().mean())
        out(f"fake-quant vs float top-1 agreement: {100 * agree:.2f}% ({len(x)} calibration "
            "samples; no labelled data for this model)")
    out(describe_output(qmodel, args.output))
    return 0
