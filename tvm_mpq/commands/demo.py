"""`tvm-mpq demo`: the whole flow on Fashion-MNIST, ending on the emulated Cortex-M7."""

from __future__ import annotations

from .common import verb_parser


def register(sub) -> None:
    p = verb_parser(sub, "demo", "the whole flow on a real data set: plan, integer model, "
                    "firmware, accuracy on the emulated Cortex-M7",
                    "  tvm-mpq demo\n"
                    "  tvm-mpq demo --images 200 -o /tmp/demo\n"
                    "  tvm-mpq demo --flash 150kB --ram 10kB   # another budget (calibrated)\n")
    p.add_argument("-o", "--output", default="build/demo", metavar="OUTDIR",
                   help="firmware project directory (default build/demo)")
    p.add_argument("--flash", default="100kB", help="FLASH budget (default 100kB)")
    p.add_argument("--ram", default="12kB", help="RAM budget (default 12kB)")
    p.add_argument("--images", type=int, default=1000,
                   help="test images run on the emulator and by onnx.reference (default 1000)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..demo import run_demo
    from ..errors import MpqError
    from ..units import parse_size

    if args.images <= 0:
        raise MpqError(f"--images must be positive, got {args.images}")
    res = run_demo(args.output, parse_size(args.flash), parse_size(args.ram), args.images,
                   args.images, quiet=args.quiet)
    return 0 if res.summary["emulator_equals_host"] else 1
