"""Tuning records: the best schedule found per layer workload (docs/tuning.md).

    {"schema": "tvm-mpq.tune-records/1", "board": "qemu_m7", "metric": "instructions",
     "workloads": [{"key": "3f2a9c1e", "kind": "pointwise", "shape": "56x56x32->56x56x64",
                    "bits": "8/8/ws8", "layers": ["block1.pw"], "trials": 10,
                    "default": {"schedule": {"ch": 2, "pix": 2, "unroll": 2},
                                "instructions": 16790595},
                    "best": {"schedule": {"ch": 2, "pix": 4, "unroll": 1},
                             "instructions": 15607410}}, ...]}

`key` is `tune.space.tuning_key` of the layer's kernel spec (kind, shapes, bit widths,
signs, rounding variant). `tvm-mpq compile --tuning-records FILE` gives each layer whose
key is in the file the `best` schedule; other layers keep the default. The file is written
atomically after every tuned layer, in a fixed order, so it is deterministic.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..codegen import kernel_dsp
from ..errors import MpqError
from ..fsutil import write_text_atomic
from .space import tuning_key

SCHEMA = "tvm-mpq.tune-records/1"


class RecordsError(MpqError):
    """A records file that cannot be used (exit 2)."""


class Records:
    def __init__(self, board: str = "qemu_m7", workloads: list[dict] | None = None):
        self.board = board
        self.workloads = {w["key"]: w for w in workloads or []}

    @classmethod
    def load(cls, path: str | Path) -> Records:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise RecordsError(f"tuning records {path} do not exist") from None
        except (OSError, ValueError) as e:
            raise RecordsError(f"tuning records {path} are not valid JSON ({e})") from None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise RecordsError(f"{path} is not a tvm-mpq tuning records file "
                               f"(schema {SCHEMA!r} expected)")
        try:
            wl = [w for w in data["workloads"]
                  if isinstance(w["key"], str) and isinstance(w["best"]["schedule"], dict)]
        except (KeyError, TypeError) as e:
            raise RecordsError(f"{path}: malformed workload entry ({e})") from None
        return cls(data.get("board", "qemu_m7"), wl)

    def schedule_for(self, spec) -> dict | None:
        """The best recorded schedule of `spec`'s workload (None: not tuned)."""
        w = self.workloads.get(tuning_key(spec))
        if w is None:
            return None
        sched = {str(k): int(v) for k, v in w["best"]["schedule"].items()}
        if not kernel_dsp.valid_schedule(spec, sched):
            raise RecordsError(f"tuning record {w['key']}: schedule {sched} is not valid for "
                               f"this {spec.kind} layer")
        return sched

    def put(self, entry: dict) -> None:
        self.workloads[entry["key"]] = entry

    def to_json(self) -> dict:
        return {"schema": SCHEMA, "board": self.board, "metric": "instructions",
                "workloads": [self.workloads[k] for k in sorted(self.workloads)]}

    def save(self, path: str | Path) -> None:
        write_text_atomic(path, json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n")
