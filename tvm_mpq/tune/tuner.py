"""`tvm-mpq tune`: tune every distinct layer of a model on the target, layer by layer.

    recs = tune_layers(layer_specs(im.mod), trials=16, records_path="mbv1.tune.json")

For each distinct workload (layers with the same `space.tuning_key` are tuned once): the
default schedule is measured first, then MetaSchedule searches the layer's knobs
(engine.tune_task) for `trials` measurements in all; the best schedule and both counts go
to the records file, which is rewritten atomically after every layer. Measurements go to
`<records>.work/trials.jsonl` as they complete, so a killed run resumes where it stopped:
known (workload, schedule) pairs are never measured again.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable
from pathlib import Path

from ..codegen import kernel_dsp
from ..errors import MpqError
from . import space
from .measure import kernel_digest
from .records import Records

log = logging.getLogger("tvm_mpq")


def work_dir_for(records_path: str | Path) -> Path:
    return Path(str(records_path) + ".work")


def _describe(spec) -> str:
    if len(spec.in_shape) == 2:
        shape = f"{spec.in_shape[-1]}->{spec.out_shape[-1]}"
    else:
        shape = "x".join(map(str, spec.in_shape[1:])) + "->" + "x".join(
            map(str, spec.out_shape[1:]))
    return shape


def _bits(spec) -> str:
    w = ("ws" if spec.w_signed else "w") + str(spec.w_bits)
    return f"{spec.in_bits}/{spec.out_bits}/{w}"


def group_layers(layers: list[tuple[str, object]], only: list[str] | None = None
                 ) -> list[tuple[str, object, list[str]]]:
    """(key, spec, layer names) of the distinct tunable workloads, in model order."""
    groups: dict[str, tuple[str, object, list[str]]] = {}
    for name, spec in layers:
        if only and not any(fnmatch.fnmatchcase(name, pat) for pat in only):
            continue
        if not spec.dsp or not kernel_dsp.schedule_space(spec):
            continue
        key = space.tuning_key(spec)
        groups.setdefault(key, (key, spec, []))[2].append(name)
    return list(groups.values())


def tune_layers(layers: list[tuple[str, object]], *, trials: int, records_path: str | Path,
                board: str = "qemu_m7", rpc: tuple | None = None,
                only: list[str] | None = None, seed: int = 0,
                progress: Callable[[str], None] = print) -> Records:
    from . import engine

    if trials < 1:
        raise MpqError("--trials must be at least 1")
    groups = group_layers(layers, only)
    if not groups:
        raise MpqError("no tunable layer selected" + (f" by --layers {' '.join(only)}"
                                                     if only else ""))
    records_path = Path(records_path)
    work = work_dir_for(records_path)
    work.mkdir(parents=True, exist_ok=True)
    records = Records.load(records_path) if records_path.is_file() else Records(board)
    trial_log = engine.TrialLog(work / "trials.jsonl")
    builder = engine.FirmwareBuilder(str(work), trial_log, board)
    runner = engine.QemuRunner(trial_log, rpc)
    for i, (key, spec, names) in enumerate(groups, 1):
        head = (f"[{i}/{len(groups)}] {spec.kind} {_describe(spec)} {_bits(spec)} "
                f"({len(names)} layer{'s' if len(names) > 1 else ''}: {names[0]}"
                f"{', ...' if len(names) > 1 else ''})")
        tspec = space.tuning_spec(spec)
        default = kernel_dsp.resolve_schedule(tspec)
        points = space.points(tspec)
        sources = {kernel_digest(tspec, s) for s in points}

        def measure(sched, tag, key=key, spec=spec, tspec=tspec):
            """Measure one point directly (not through MetaSchedule) and log it."""
            b = builder.bench(spec)
            elf = b.build(sched, work / "artifacts" / key / tag / "firmware.elf")
            trial = {"input": str(b.input_path), "want": str(b.want_path),
                     "kernel": b.kernel_name}
            rec = {"key": key, "schedule": sched, "source": kernel_digest(tspec, sched)}
            rec["instructions"] = runner.measure(elf.parent, trial)
            trial_log.add(rec)
            return rec

        base = trial_log.get(key, default, kernel_digest(tspec, default))
        if base is None:
            base = measure(default, "default")
        remaining = min(trials, len(sources)) - len(trial_log.of_key(key, sources))
        if remaining > 0:
            cb = _progress_callback(trial_log, key, sources, head, base["instructions"],
                                    progress)
            engine.tune_task(spec, trials=remaining, work_dir=work, log=trial_log,
                             builder=builder, runner=runner, seed=seed, callback=cb)
        # a small space the evolutionary search did not cover within its budget: the
        # points it did not reach, in the space's order, up to the trials asked for
        for sched in points:
            if len(trial_log.of_key(key, sources)) >= min(trials, len(sources)):
                break
            if trial_log.get(key, sched, kernel_digest(tspec, sched)) is None:
                try:
                    measure(sched, engine.schedule_name(sched))
                except MpqError as e:           # a failed trial, logged as MS's are
                    trial_log.add({"key": key, "schedule": sched,
                                   "source": kernel_digest(tspec, sched), "error": str(e)})
        mine = trial_log.of_key(key, sources)
        done = [r for r in mine if "instructions" in r]
        best = min(done, key=lambda r: (r["instructions"], engine.schedule_name(r["schedule"])))
        entry = {"key": key, "kind": spec.kind, "shape": _describe(spec), "bits": _bits(spec),
                 "layers": names, "trials": len(mine),
                 "default": {"schedule": default, "instructions": base["instructions"]},
                 "best": {"schedule": best["schedule"], "instructions": best["instructions"]}}
        records.put(entry)
        records.save(records_path)
        gain = 1 - entry["best"]["instructions"] / base["instructions"]
        progress(f"{head}: {entry['trials']} trials, best {entry['best']['instructions']:,} "
                 f"insn {entry['best']['schedule']} vs default {base['instructions']:,} "
                 f"({-gain:+.1%})")
    return records


def _progress_callback(trial_log, key: str, sources: set, head: str, default: int, progress):
    from . import engine

    ms = engine.ms

    @engine.ta.derived_object
    class Progress(ms.measure_callback.PyMeasureCallback):
        def apply(self, task_scheduler, task_id, measure_candidates, builder_results,
                  runner_results):
            mine = trial_log.of_key(key, sources)
            done = [r for r in mine if "instructions" in r]
            best = min(r["instructions"] for r in done) if done else default
            progress(f"{head}: {len(mine)} trials, best so far "
                     f"{best:,} insn ({best / default - 1:+.1%} vs default)")

    return Progress()


def summary(records: Records, layers: list[tuple[str, object]]) -> tuple[list, int, int]:
    """Rows (layer, kind, bits, default, tuned, gain) for every tuned layer of `layers`,
    and the totals (default, tuned) over them."""
    rows, tot_d, tot_b = [], 0, 0
    for name, spec in layers:
        w = records.workloads.get(space.tuning_key(spec))
        if w is None:
            continue
        d, b = w["default"]["instructions"], w["best"]["instructions"]
        tot_d += d
        tot_b += b
        rows.append([name, spec.kind, _bits(spec), d, b, f"{b / d - 1:+.1%}",
                     engine_name(w["best"]["schedule"])])
    return rows, tot_d, tot_b


def engine_name(schedule: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(schedule.items()))
