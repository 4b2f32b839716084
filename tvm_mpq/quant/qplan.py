"""The precision plan as the quantizers see it (schema "tvm-mpq.plan/1").

`read_plan` loads a plan file (through `tvm_mpq.memory.plan.load_plan` when that module
exists, else a small JSON reader); `layer_configs` checks it against a `TorchNet` and
returns one `LayerQ` per weight layer. `make_plan` writes plans by hand (tests, benches):
it is not the memory-driven allocator, only a way to state bit widths explicitly.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, is_dataclass

import torch

from ..errors import PlanError
from .torch_model import INPUT_BITS, TorchNet

SCHEMA = "tvm-mpq.plan/1"
BITS = (8, 4, 2)
SCHEMES = ("mixpl", "mixpc")
LOGIT_BITS = 8


@dataclass(frozen=True)
class LayerQ:
    name: str
    kind: str
    in_bits: int
    out_bits: int
    w_bits: int
    icn: bool
    per_channel: bool


def _to_dict(plan) -> dict:
    if isinstance(plan, dict):
        return plan
    for attr in ("to_json", "to_dict", "as_dict"):
        if hasattr(plan, attr):
            return getattr(plan, attr)()
    if is_dataclass(plan):
        return asdict(plan)
    raise PlanError(f"cannot read a plan of type {type(plan).__name__}")


def read_plan(path: str, graph=None) -> dict:
    """Plan file -> plan dict; `graph` (a LayerGraph) lets the memory module check it."""
    try:
        from ..memory.plan import load_plan   # the memory planner's reader, when present
    except ImportError:
        load_plan = None
    if load_plan is not None and graph is not None:
        return _to_dict(load_plan(path, graph))
    try:
        with open(path) as f:
            plan = json.load(f)
    except FileNotFoundError:
        raise PlanError(f"plan file '{path}' not found") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PlanError(f"plan file '{path}' is not valid JSON: {e}") from None
    if not isinstance(plan, dict) or plan.get("schema") != SCHEMA:
        raise PlanError(f"plan file '{path}': not a {SCHEMA} plan (schema "
                        f"{plan.get('schema') if isinstance(plan, dict) else None!r})")
    return plan


def layer_configs(plan: dict, net: TorchNet) -> dict[str, LayerQ]:
    """Check `plan` against `net` and return {layer name: LayerQ} for its weight layers."""
    if plan.get("scheme") not in SCHEMES:
        raise PlanError(f"plan scheme {plan.get('scheme')!r} is not one of {', '.join(SCHEMES)}")
    entries = plan.get("layers")
    if not isinstance(entries, list):
        raise PlanError("plan has no 'layers' list")
    by_name = {}
    for e in entries:
        if not isinstance(e, dict) or "name" not in e:
            raise PlanError(f"plan layer entry without a name: {e!r}"[:200])
        by_name[e["name"]] = e
    wanted = [m for m in net.weight_layers()]
    missing = [m.name for m in wanted if m.name not in by_name]
    names = {m.name for m in net.layers}
    extra = [n for n in by_name if n not in names]
    if missing or extra:
        what = []
        if missing:
            what.append(f"no entry for layer(s) {', '.join(missing[:4])}")
        if extra:
            what.append(f"unknown layer(s) {', '.join(extra[:4])}")
        raise PlanError(f"plan for model '{plan.get('model')}' does not match model "
                        f"'{net.name}': {'; '.join(what)}",
                        hint="make the plan for this model with `tvm-mpq plan`")
    cfg: dict[str, LayerQ] = {}
    prev_out = int(plan.get("input_bits", INPUT_BITS))
    if prev_out != INPUT_BITS:
        raise PlanError(f"plan input_bits {prev_out}: the network input is always 8 bits")
    for m in net.layers:
        e = by_name.get(m.name)
        if m.kind == "pool":
            if e is not None and e.get("in_bits", prev_out) != prev_out:
                raise PlanError(f"plan layer '{m.name}': in_bits {e.get('in_bits')} but the "
                                f"previous layer outputs {prev_out} bits")
            continue
        try:
            q = LayerQ(m.name, e.get("kind", m.kind), int(e["in_bits"]), int(e["out_bits"]),
                       int(e["w_bits"]), bool(e["icn"]), bool(e["per_channel"]))
        except (KeyError, TypeError, ValueError) as err:
            raise PlanError(f"plan layer '{m.name}': missing or bad field {err}") from None
        if q.kind != m.kind:
            raise PlanError(f"plan layer '{m.name}' is a {q.kind} but the model has a {m.kind}")
        for field in ("in_bits", "out_bits", "w_bits"):
            if getattr(q, field) not in BITS:
                raise PlanError(f"plan layer '{m.name}': {field} {getattr(q, field)} not in "
                                f"{{8, 4, 2}}")
        if q.in_bits != prev_out:
            raise PlanError(f"plan layer '{m.name}': in_bits {q.in_bits} but the previous "
                            f"layer outputs {prev_out} bits")
        cfg[m.name] = q
        prev_out = q.out_bits
    last = net.layers[-1]
    if cfg[last.name].out_bits != LOGIT_BITS:
        raise PlanError(f"plan layer '{last.name}': the logits must stay at 8 bits")
    return cfg


def layer_sizes(net: TorchNet) -> dict[str, tuple[int, int, int, int]]:
    """{layer: (n_in, n_out, n_weights, out_channels)} at batch 1."""
    sizes = {}
    x = torch.zeros(1, *net.input_shape)
    with torch.no_grad():
        for m in net.layers:
            if m.kind == "linear":
                x = x.flatten(1)
            y = _plain(m, x)
            n_w = int(m.weight.numel()) if hasattr(m, "weight") else 0
            sizes[m.name] = (x.numel(), y.numel(), n_w, y.shape[1])
            x = y
    return sizes


def _plain(m, x):
    """The layer's float forward (no quantizers, no statistics updates)."""
    saved = {k: getattr(m, k) for k in ("wq", "aq", "oq", "requant", "fold") if hasattr(m, k)}
    training = m.training
    try:
        for k in saved:
            setattr(m, k, False if k == "fold" else None)
        m.eval()
        return m(x)
    finally:
        for k, v in saved.items():
            setattr(m, k, v)
        m.train(training)


def make_plan(net: TorchNet, scheme: str = "mixpl", w_bits: dict[str, int] | None = None,
              out_bits: dict[str, int] | None = None, icn: dict[str, bool] | None = None
              ) -> dict:
    """A plan with 8 bits everywhere except the given per-layer `w_bits` / `out_bits`.

    MixPL uses ICN on layers with w_bits < 8 or out_bits < 8 and folding elsewhere
    (override with `icn`); MixPC uses per-channel weights and ICN everywhere. The byte
    counts follow the method's chain models (section 1 of the method notes)."""
    if scheme not in SCHEMES:
        raise ValueError(scheme)
    w_bits, out_bits, icn = dict(w_bits or {}), dict(out_bits or {}), dict(icn or {})
    sizes = layer_sizes(net)
    layers, prev = [], INPUT_BITS
    flash = ram = ro = 0
    for m in net.layers:
        n_in, n_out, n_w, c = sizes[m.name]
        if m.kind == "pool":
            layers.append({"name": m.name, "kind": "pool", "in_bits": prev, "out_bits": prev})
            ram = max(ram, (n_in + n_out) * prev // 8)
            continue
        last = m is net.layers[-1]
        qo = LOGIT_BITS if last else out_bits.get(m.name, 8)
        qw = w_bits.get(m.name, 8)
        per_channel = scheme == "mixpc"
        use_icn = True if per_channel else icn.get(m.name, qw < 8 or qo < 8)
        extra = (c * 9 + 4 * 2 if per_channel else c * 9 + 4 * 3 if use_icn else c * 4 + 4 * 5)
        ro += (n_w * qw + 7) // 8 + extra
        ram = max(ram, (n_in * prev + n_out * qo + 7) // 8)
        layers.append({"name": m.name, "kind": m.kind, "in_bits": prev, "out_bits": qo,
                       "w_bits": qw, "icn": bool(use_icn), "per_channel": per_channel})
        prev = qo
    flash = ro
    return {"schema": SCHEMA, "model": net.name, "scheme": scheme, "flash_bytes": flash,
            "ram_bytes": ram, "ro_bytes": ro, "rw_bytes": ram, "input_bits": INPUT_BITS,
            "layers": layers}
