"""`tvm-mpq plan MODEL`: memory-driven mixed-precision bit allocation for a device budget."""

from __future__ import annotations

from ..errors import MpqError
from ..fsutil import write_json_atomic
from ..memory.plan import RAM_MODELS, SCHEMES
from ..report.table import format_table
from ..units import parse_size
from .common import add_model_args, load_graph, out, verb_parser

# name -> (FLASH bytes, RAM bytes)
DEVICES = {
    "stm32h743": (2 * 1024 * 1024, 512 * 1024),
}


def register(sub) -> None:
    p = verb_parser(
        sub, "plan",
        "choose 8/4/2-bit precisions for every weight and activation tensor so that the "
        "model fits a FLASH and a RAM budget",
        "  tvm-mpq plan mobilenet_v1_1.0_224 --flash 2048000 --ram 512000\n"
        "  tvm-mpq plan mobilenet_v1_1.0_224 --device stm32h743 --json plan.json\n"
        "  tvm-mpq plan mobilenet_v1_0.75_192 --flash 2MB --ram 512kB --scheme mixpl\n"
        "  tvm-mpq plan my_model.onnx --device stm32h743 --ram 256KiB --ram-model liveness\n"
        "\n"
        "sizes: plain bytes (2048000, 2_048_000, 2,048,000) or with a unit: kB/KB/k = 1000,\n"
        "KiB = 1024, MB, MiB, GB, GiB. --device gives both budgets; --flash/--ram override it.\n"
        "exit codes: 0 planned, 2 the budget cannot be met (the message gives the smallest\n"
        "reachable footprint and the layer that blocks it) or bad arguments.\n")
    add_model_args(p)
    p.add_argument("--flash", metavar="SIZE", help="read-only memory budget (weights + "
                   "quantization parameters), e.g. 2MB or 2048000")
    p.add_argument("--ram", metavar="SIZE", help="read-write memory budget (activations), "
                   "e.g. 512kB or 512000")
    p.add_argument("--device", choices=sorted(DEVICES),
                   help="take both budgets from a device preset (stm32h743: 2 MiB FLASH, "
                   "512 KiB RAM)")
    p.add_argument("--scheme", choices=SCHEMES, default="mixpc",
                   help="mixpc: per-channel weights, ICN everywhere (default); mixpl: "
                   "per-layer weights, batch-norm folded where weights and output stay 8-bit")
    p.add_argument("--ram-model", choices=RAM_MODELS, default=None,
                   help="chain: the paper's per-layer input+output model (the default for a "
                   "chain of layers); liveness: peak of all live tensors over the real graph "
                   "plus kernel scratch (the default for graphs with adds or branches)")
    p.add_argument("--json", metavar="FILE", help="write the plan (schema tvm-mpq.plan/1)")
    p.set_defaults(func=run)


def budgets(args) -> tuple[int, int]:
    flash = ram = None
    if args.device:
        flash, ram = DEVICES[args.device]
    if args.flash is not None:
        flash = parse_size(args.flash)
    if args.ram is not None:
        ram = parse_size(args.ram)
    if flash is None or ram is None:
        missing = " and ".join(n for n, v in (("--flash", flash), ("--ram", ram)) if v is None)
        raise MpqError(f"no {missing} budget given", hint="use --flash SIZE --ram SIZE or "
                       "--device stm32h743")
    for name, v in (("--flash", flash), ("--ram", ram)):
        if v <= 0:
            raise MpqError(f"{name} budget must be positive, got {v} B")
    return flash, ram


def _pct(used: int, budget: int) -> str:
    return f"{100.0 * used / budget:.1f}%"


def run(args) -> int:
    from ..memory.allocation import allocate

    flash, ram = budgets(args)          # bad sizes fail before the model is even loaded
    _, graph = load_graph(args)
    plan = allocate(graph, flash, ram, scheme=args.scheme, ram_model=args.ram_model)
    rows = []
    for i, lp in enumerate(plan.layers):
        rows.append([i, lp.name, lp.kind, lp.in_bits, lp.out_bits, lp.w_bits, lp.weight_bytes,
                     lp.param_bytes, lp.act_bytes, "ICN" if lp.icn else "folded"])
    out(f"model {plan.model}: {len(plan.layers)} weight layers, scheme {plan.scheme}, "
        f"RAM model {plan.ram_model}")
    out(format_table(["#", "layer", "kind", "in", "out", "w", "weight B", "param B", "act B",
                      "requant"], rows, align="rllrrrrrrl"))
    out(f"FLASH (ro): {plan.ro_bytes:>11,} B used / {flash:>11,} B budget "
        f"({_pct(plan.ro_bytes, flash)})")
    out(f"RAM   (rw): {plan.rw_bytes:>11,} B used / {ram:>11,} B budget "
        f"({_pct(plan.rw_bytes, ram)})")
    cuts = sum(1 for lp in plan.layers if lp.w_bits < 8)
    acts = sum(1 for lp in plan.layers if lp.out_bits < 8)
    out("bits: " + plan.bits_string())
    out("all tensors at 8 bits" if plan.all_8bit else
        f"mixed precision: {cuts} weight tensors and {acts} activation tensors below 8 bits")
    if args.json:
        write_json_atomic(args.json, plan.to_json())
        out(f"wrote {args.json}")
    return 0
