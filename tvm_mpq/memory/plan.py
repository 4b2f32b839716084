"""The precision plan: which bit width every weight and activation tensor gets.

This JSON file (schema `tvm-mpq.plan/1`) is the contract between `tvm-mpq plan` and the
later steps (retraining, integer conversion, code generation). See docs/plan.md.

    {"schema": "tvm-mpq.plan/1", "model": str, "scheme": "mixpl"|"mixpc",
     "ram_model": "chain"|"liveness", "flash_bytes": int, "ram_bytes": int,
     "ro_bytes": int, "rw_bytes": int, "input_bits": 8,
     "layers": [{"name", "kind", "in_bits", "out_bits", "w_bits", "icn", "per_channel",
                 "n_weights", "out_channels", "weight_bytes", "param_bytes", "act_bytes",
                 "in_from", "n_in", "n_out"}]}

`layers` lists the weight layers (the layers of operators with weights, `ops.weight_kinds`)
in execution order.
`in_from` (optional on input, always written) names the weight layer whose output
precision this layer's input carries (pool/add layers pass a precision through), or is
null for the network input; when absent the plan is read as a chain (`in_from` = the
previous layer).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from .. import ops
from ..errors import PlanError

SCHEMA = "tvm-mpq.plan/1"
SCHEMES = ("mixpl", "mixpc")
RAM_MODELS = ("chain", "liveness")
BITS = (8, 4, 2)
INPUT_BITS = 8


# ---------------------------------------------------------------------------------------
# The method's size model (docs/plan.md, method notes section 1).

def packed_bytes(n: int, bits: int) -> int:
    """Bytes of `n` elements packed at `bits` bits (sub-byte elements share bytes)."""
    return (n * bits + 7) // 8


def uses_icn(scheme: str, w_bits: int, out_bits: int) -> bool:
    """MixPC: always ICN. MixPL: ICN unless weights and output are both 8-bit, in which
    case batch-norm stays folded into the weights."""
    return scheme == "mixpc" or w_bits < 8 or out_bits < 8


def param_bytes(scheme: str, out_channels: int, w_bits: int, out_bits: int,
                icn: bool | None = None) -> int:
    """Per-layer quantization parameters stored in FLASH next to the weights.

    - MixPL, folded batch-norm: int32 bias per output channel + 5 int32 (Zi, Zo, Zw, M0, N0)
    - MixPL, ICN: per output channel M0 (int32), N0 (int8), bias (int32) + 3 int32
    - MixPC (always ICN): per output channel M0 (int32), N0 (int8), bias (int32),
      Zw (int8) + 2 int32

    `icn` defaults to `uses_icn(...)`; a MixPL plan may also choose ICN on an 8/8 layer.
    """
    c = out_channels
    if scheme == "mixpc":
        return c * (4 + 1 + 4 + 1) + 2 * 4
    if icn is None:
        icn = uses_icn(scheme, w_bits, out_bits)
    if icn:
        return c * (4 + 1 + 4) + 3 * 4
    return c * 4 + 5 * 4


# ---------------------------------------------------------------------------------------

@dataclass
class LayerPlan:
    name: str
    kind: str
    in_bits: int
    out_bits: int
    w_bits: int
    icn: bool
    per_channel: bool
    n_weights: int
    out_channels: int
    weight_bytes: int
    param_bytes: int
    act_bytes: int
    in_from: str | None = None
    n_in: int = 0
    n_out: int = 0

    @property
    def flash_bytes(self) -> int:
        return self.weight_bytes + self.param_bytes

    @property
    def bits_code(self) -> str:
        """e.g. `P428`: kind letter, then input/output/weight bits."""
        return f"{ops.letters()[self.kind]}{self.in_bits}{self.out_bits}{self.w_bits}"

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Plan:
    model: str
    scheme: str
    ram_model: str
    flash_bytes: int
    ram_bytes: int
    ro_bytes: int
    rw_bytes: int
    layers: list[LayerPlan] = field(default_factory=list)
    input_bits: int = INPUT_BITS

    def to_json(self) -> dict:
        return {"schema": SCHEMA, "model": self.model, "scheme": self.scheme,
                "ram_model": self.ram_model, "flash_bytes": self.flash_bytes,
                "ram_bytes": self.ram_bytes, "ro_bytes": self.ro_bytes,
                "rw_bytes": self.rw_bytes, "input_bits": self.input_bits,
                "layers": [lp.to_json() for lp in self.layers]}

    def bits_string(self) -> str:
        """`C848 D448 P428 ...`: one code per weight layer (kind, in, out, weight bits)."""
        return " ".join(lp.bits_code for lp in self.layers)

    def layer(self, name: str) -> LayerPlan:
        for lp in self.layers:
            if lp.name == name:
                return lp
        raise PlanError(f"the plan for '{self.model}' has no layer '{name}'")

    @property
    def all_8bit(self) -> bool:
        return all(lp.in_bits == lp.out_bits == lp.w_bits == 8 for lp in self.layers)


# ---------------------------------------------------------------------------------------
# Strict reading.

_TOP = {"schema": str, "model": str, "scheme": str, "ram_model": str, "flash_bytes": int,
        "ram_bytes": int, "ro_bytes": int, "rw_bytes": int, "input_bits": int, "layers": list}
_LAYER = {"name": str, "kind": str, "in_bits": int, "out_bits": int, "w_bits": int,
          "icn": bool, "per_channel": bool, "n_weights": int, "out_channels": int,
          "weight_bytes": int, "param_bytes": int, "act_bytes": int}
_LAYER_OPTIONAL = {"in_from": (str, type(None)), "n_in": int, "n_out": int}


def _typed(value, typ) -> bool:
    if typ is int:      # JSON true/false are not sizes or bit widths
        return isinstance(value, int) and not isinstance(value, bool)
    if typ is bool:
        return isinstance(value, bool)
    return isinstance(value, typ)


def _check_fields(obj: dict, spec: dict, where: str) -> None:
    for key, typ in spec.items():
        if key not in obj:
            raise PlanError(f"{where}: missing key '{key}'")
        if not _typed(obj[key], typ):
            raise PlanError(f"{where}: '{key}' must be {typ.__name__}, got "
                            f"{type(obj[key]).__name__} {obj[key]!r:.40}")


def plan_from_json(obj, graph=None) -> Plan:
    """Build a `Plan` from parsed JSON, validating it strictly (`PlanError`, one line).
    With `graph` (a `LayerGraph`), also check that the plan belongs to that model."""
    if not isinstance(obj, dict):
        raise PlanError(f"plan: expected a JSON object, got {type(obj).__name__}")
    _check_fields(obj, _TOP, "plan")
    if obj["schema"] != SCHEMA:
        raise PlanError(f"plan: schema '{obj['schema']:.40}' is not '{SCHEMA}'")
    if obj["scheme"] not in SCHEMES:
        raise PlanError(f"plan: scheme '{obj['scheme']:.40}' not in {', '.join(SCHEMES)}")
    if obj["ram_model"] not in RAM_MODELS:
        raise PlanError(f"plan: ram_model '{obj['ram_model']:.40}' not in "
                        f"{', '.join(RAM_MODELS)}")
    if obj["input_bits"] != INPUT_BITS:
        raise PlanError(f"plan: input_bits is {obj['input_bits']}; the network input stays "
                        f"at {INPUT_BITS} bits")
    for key in ("flash_bytes", "ram_bytes", "ro_bytes", "rw_bytes"):
        if obj[key] < 0:
            raise PlanError(f"plan: '{key}' is negative ({obj[key]})")
    if not obj["layers"]:
        raise PlanError("plan: 'layers' is empty")
    scheme = obj["scheme"]
    layers: list[LayerPlan] = []
    out_bits: dict[str, int] = {}
    for i, lo in enumerate(obj["layers"]):
        where = f"plan layer {i}"
        if not isinstance(lo, dict):
            raise PlanError(f"{where}: expected an object, got {type(lo).__name__}")
        _check_fields(lo, _LAYER, where)
        where = f"plan layer {i} '{lo['name']:.60}'"
        for key, typ in _LAYER_OPTIONAL.items():
            if key in lo and (not isinstance(lo[key], typ) or isinstance(lo[key], bool)):
                raise PlanError(f"{where}: '{key}' has the wrong type "
                                f"({type(lo[key]).__name__})")
        if lo["name"] in out_bits:
            raise PlanError(f"{where}: duplicate layer name")
        if lo["kind"] not in ops.letters():
            raise PlanError(f"{where}: kind '{lo['kind']:.40}' not in "
                            f"{', '.join(ops.letters())}")
        for key in ("in_bits", "out_bits", "w_bits"):
            if lo[key] not in BITS:
                raise PlanError(f"{where}: {key} = {lo[key]} is not one of 8, 4, 2")
        for key in ("n_weights", "out_channels", "weight_bytes", "param_bytes", "act_bytes",
                    "n_in", "n_out"):
            if lo.get(key, 0) < 0:
                raise PlanError(f"{where}: '{key}' is negative ({lo[key]})")
        if "in_from" in lo:
            src = lo["in_from"]
        else:
            src = layers[-1].name if layers else None
        if src is None:
            want, what = INPUT_BITS, "the network input"
        elif src in out_bits:
            want, what = out_bits[src], f"layer '{src}' output"
        else:
            raise PlanError(f"{where}: in_from '{src:.60}' is not an earlier layer of the plan")
        if lo["in_bits"] != want:
            raise PlanError(f"{where}: in_bits {lo['in_bits']} differs from the {want} bits "
                            f"of {what}")
        needs_icn = uses_icn(scheme, lo["w_bits"], lo["out_bits"])
        if lo["per_channel"] != (scheme == "mixpc") or (needs_icn and not lo["icn"]):
            raise PlanError(f"{where}: icn={lo['icn']}, per_channel={lo['per_channel']} do not "
                            f"fit scheme {scheme} with w_bits {lo['w_bits']}, out_bits "
                            f"{lo['out_bits']} (mixpc: per-channel + ICN; mixpl: per-layer, "
                            "ICN unless weights and output are 8-bit)")
        if lo["weight_bytes"] != packed_bytes(lo["n_weights"], lo["w_bits"]):
            raise PlanError(f"{where}: weight_bytes {lo['weight_bytes']} != "
                            f"{lo['n_weights']} weights at {lo['w_bits']} bits")
        pb = param_bytes(scheme, lo["out_channels"], lo["w_bits"], lo["out_bits"], lo["icn"])
        if lo["param_bytes"] != pb:
            raise PlanError(f"{where}: param_bytes {lo['param_bytes']} != {pb} expected for "
                            f"{lo['out_channels']} channels ({scheme})")
        lp = LayerPlan(name=lo["name"], kind=lo["kind"], in_bits=lo["in_bits"],
                       out_bits=lo["out_bits"], w_bits=lo["w_bits"], icn=lo["icn"],
                       per_channel=lo["per_channel"], n_weights=lo["n_weights"],
                       out_channels=lo["out_channels"], weight_bytes=lo["weight_bytes"],
                       param_bytes=lo["param_bytes"], act_bytes=lo["act_bytes"], in_from=src,
                       n_in=lo.get("n_in", 0), n_out=lo.get("n_out", 0))
        layers.append(lp)
        out_bits[lp.name] = lp.out_bits
    ro = sum(lp.flash_bytes for lp in layers)
    if obj["ro_bytes"] != ro:
        raise PlanError(f"plan: ro_bytes {obj['ro_bytes']} != {ro}, the sum of the layers' "
                        "weight and parameter bytes")
    plan = Plan(model=obj["model"], scheme=scheme, ram_model=obj["ram_model"],
                flash_bytes=obj["flash_bytes"], ram_bytes=obj["ram_bytes"],
                ro_bytes=obj["ro_bytes"], rw_bytes=obj["rw_bytes"], layers=layers,
                input_bits=obj["input_bits"])
    if graph is not None:
        check_plan_matches(plan, graph)
    return plan


def check_plan_matches(plan: Plan, graph) -> None:
    """`PlanError` unless `plan` was made for `graph` (same model, layers, shapes)."""
    from .liveness import tensor_sources

    if plan.model != graph.name:
        raise PlanError(f"the plan is for model '{plan.model:.60}', not '{graph.name}'")
    wl = graph.weight_layers
    if len(plan.layers) != len(wl):
        raise PlanError(f"the plan has {len(plan.layers)} layers, model '{graph.name}' has "
                        f"{len(wl)} weight layers")
    src = tensor_sources(graph)
    for i, (lp, layer) in enumerate(zip(plan.layers, wl)):
        if lp.name != layer.name or lp.kind != layer.kind:
            raise PlanError(f"plan layer {i} is '{lp.name:.60}' ({lp.kind}), model "
                            f"'{graph.name}' has '{layer.name}' ({layer.kind})")
        if lp.n_weights != layer.n_weights or lp.out_channels != layer.out_channels:
            raise PlanError(f"plan layer {i} '{lp.name}': {lp.n_weights} weights / "
                            f"{lp.out_channels} channels, the model has {layer.n_weights} / "
                            f"{layer.out_channels}")
        k = src[layer.inputs[0]]
        want = None if k is None else wl[k].name
        if lp.in_from != want:
            raise PlanError(f"plan layer {i} '{lp.name}': input taken from "
                            f"{lp.in_from or 'the network input'}, the model feeds it from "
                            f"{want or 'the network input'}")


def load_plan(path, graph=None) -> Plan:
    """Read and validate a plan JSON file (`PlanError` with one line on any problem)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise PlanError(f"plan file '{path}' not found") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise PlanError(f"cannot read plan file '{path}': {e.__class__.__name__}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise PlanError(f"plan file '{path}' is not valid JSON: {e.msg} at line {e.lineno} "
                        f"column {e.colno}") from None
    try:
        return plan_from_json(obj, graph)
    except PlanError as e:
        raise PlanError(f"plan file '{path}': {e}") from None


def bits_count(plan: Plan) -> dict[int, int]:
    """How many weight tensors sit at 8, 4 and 2 bits."""
    return {b: sum(1 for lp in plan.layers if lp.w_bits == b) for b in BITS}
