"""MetaSchedule plumbing: the Cortex-M7 firmware builder, the QEMU / RPC runners, the knob
mutator and the progress callback.

- `FirmwareBuilder` (a MetaSchedule PyBuilder): for each candidate, reads the layer's spec
  and the knob decisions from the scheduled workload, generates the fast kernel with that
  schedule, builds the layer's measurement firmware (measure.LayerBench) and returns an
  artifact directory (firmware.elf + trial.json).
- `QemuRunner` (a PyRunner): runs the firmware on QEMU mps2-an500 and returns the kernel's
  exact executed-instruction count. MetaSchedule wants seconds: `run_secs` holds
  instructions x 1e-9 (as if one instruction took a nanosecond); it is never a time.
  With `rpc=(host, port, key)` the runs go through TVM's RPC tracker to the servers of
  `tvm-mpq rpc-server` (tune/rpc.py), which may sit on other machines or next to boards.
- Every measurement is appended (and fsync'ed) to the trial log (`TrialLog`) before
  MetaSchedule sees it: a killed run loses nothing, and a resumed run takes known results
  from the log instead of measuring again.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .. import tvm_adapter as ta
from ..codegen import kernel_dsp
from ..errors import MpqError
from . import space
from .measure import LayerBench, MeasureError, kernel_digest, measure_elf

ms = ta.meta_schedule()
INSN_SECONDS = 1e-9


def schedule_name(schedule: dict) -> str:
    return "_".join(f"{k}{v}" for k, v in sorted(schedule.items())) or "default"


class TrialLog:
    """Append-only JSON-lines log of measured trials: {"key", "schedule", "source",
    "instructions" | "error"} ("source": measure.kernel_digest, so a trial is reused only
    while the kernel's C is the same); the last line of a killed run may be partial and
    is ignored."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.lock = threading.Lock()
        self.results: dict[tuple[str, str], dict] = {}
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                    self.results[(rec["key"], schedule_name(rec["schedule"]),
                                  rec["source"])] = rec
                except (ValueError, KeyError, TypeError):
                    continue

    def get(self, key: str, schedule: dict, source: str) -> dict | None:
        return self.results.get((key, schedule_name(schedule), source))

    def add(self, rec: dict) -> None:
        with self.lock:
            self.results[(rec["key"], schedule_name(rec["schedule"]), rec["source"])] = rec
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.write(json.dumps(rec, sort_keys=True) + "\n")
                f.flush()
                os.fsync(f.fileno())

    def of_key(self, key: str, sources: set[str] | None = None) -> list[dict]:
        """The trials of a workload (only those of the current kernels, with `sources`)."""
        return [r for (k, _, src), r in self.results.items()
                if k == key and (sources is None or src in sources)]


@ta.derived_object
class FirmwareBuilder(ms.builder.PyBuilder):
    def __init__(self, work_dir: str, log: TrialLog, board: str = "qemu_m7"):
        super().__init__()
        self.work_dir = Path(work_dir)
        self.log = log
        self.board = board
        self.benches: dict[str, LayerBench] = {}

    def bench(self, spec) -> LayerBench:
        key = space.tuning_key(spec)
        if key not in self.benches:
            self.benches[key] = LayerBench(spec, self.work_dir / "layers", self.board)
        return self.benches[key]

    def build(self, build_inputs):
        results = []
        for bi in build_inputs:
            try:
                spec = space.spec_of_mod(bi.mod)
                sched = space.schedule_of_mod(bi.mod)
                key = space.tuning_key(spec)
                art = self.work_dir / "artifacts" / key / schedule_name(sched)
                art.mkdir(parents=True, exist_ok=True)
                if not kernel_dsp.valid_schedule(spec, sched):
                    raise MpqError(f"schedule {sched} is not valid (too many accumulators)")
                trial = {"key": key, "schedule": sched, "source": kernel_digest(spec, sched)}
                if self.log.get(key, sched, trial["source"]) is None:
                    b = self.bench(spec)
                    b.build(sched, art / "firmware.elf")
                    trial.update(input=str(b.input_path), want=str(b.want_path),
                                 kernel=b.kernel_name)
                (art / "trial.json").write_text(json.dumps(trial, sort_keys=True))
                # MetaSchedule removes the artifact's parent directory after the run
                results.append(ms.builder.BuilderResult(str(art / "trial.json"), None))
            except Exception as e:  # noqa: BLE001  (a failed candidate, reported to MS)
                results.append(ms.builder.BuilderResult(None, f"{type(e).__name__}: {e}"))
        return results


def _done_future(secs, error):
    res = ms.runner.RunnerResult(secs, error)
    return ms.runner.RunnerFuture(f_done=lambda: True, f_result=lambda: res)


@ta.derived_object
class QemuRunner(ms.runner.PyRunner):
    def __init__(self, log: TrialLog, rpc: tuple | None = None, timeout_s: float = 600):
        super().__init__()
        self.log = log
        self.rpc = rpc
        self.timeout_s = timeout_s

    def measure(self, art: Path, trial: dict) -> int:
        """Executed instructions of the firmware in artifact directory `art` (QEMU here or
        a server of the RPC tracker); MeasureError for a wrong output, fault or timeout."""
        if self.rpc is None:
            return measure_elf(art / "firmware.elf", trial["input"], trial["want"],
                               trial["kernel"], self.timeout_s)
        from .rpc import measure_remote

        return measure_remote(self.rpc, art / "firmware.elf", Path(trial["input"]),
                              Path(trial["want"]), trial["kernel"], self.timeout_s)

    def _one(self, path: str) -> tuple[list | None, str | None]:
        art = Path(path).parent
        trial = json.loads(Path(path).read_text())
        known = self.log.get(trial["key"], trial["schedule"], trial["source"])
        if known is None:
            rec = {"key": trial["key"], "schedule": trial["schedule"],
                   "source": trial["source"]}
            try:
                rec["instructions"] = self.measure(art, trial)
            except MeasureError as e:       # a failed trial; set-up errors stop the run
                rec["error"] = str(e)
            self.log.add(rec)
            known = rec
        if "instructions" in known:
            return [known["instructions"] * INSN_SECONDS], None
        return None, known["error"]

    def run(self, runner_inputs):
        """Local QEMU: one trial after the other. RPC: as many at once as the tracker has
        servers for the key."""
        workers = 1
        if self.rpc is not None:
            from .rpc import count_servers

            workers = max(1, count_servers(self.rpc))
        if workers == 1:
            return [_done_future(*self._one(ri.artifact_path)) for ri in runner_inputs]
        pool = ThreadPoolExecutor(workers)
        futs = [pool.submit(self._one, ri.artifact_path) for ri in runner_inputs]
        pool.shutdown(wait=False)
        return [ms.runner.RunnerFuture(f_done=f.done, f_result=lambda f=f: ms.runner.RunnerResult(
            *f.result())) for f in futs]


@ta.derived_object
class MutateKnob(ms.mutator.PyMutator):
    """Move one knob decision (a SampleCategorical) of the trace to another candidate."""

    def __init__(self, seed: int = 0):
        super().__init__()
        self.rng = np.random.default_rng(seed)

    def _initialize_with_tune_context(self, context) -> None:
        pass

    def apply(self, trace, _rand_state):
        insts = [i for i in trace.insts if i.kind.name == "SampleCategorical"
                 and len(i.attrs[0]) > 1]
        if not insts:
            return None
        inst = insts[int(self.rng.integers(len(insts)))]
        n = len(inst.attrs[0])
        cur = int(trace.decisions[inst])
        new = (cur + 1 + int(self.rng.integers(n - 1))) % n
        return trace.with_decision(inst, new, True)

    def clone(self):
        return MutateKnob(int(self.rng.integers(1 << 31)))


def design_space(seed: int = 0):
    return ms.space_generator.ScheduleFn(space.schedule_fn, sch_rules=[], postprocs=[],
                                         mutator_probs={MutateKnob(seed): 1.0})


def tune_task(spec, *, trials: int, work_dir: Path, log: TrialLog, builder, runner,
              seed: int = 0, callback=None):
    """Tune one layer with MetaSchedule's evolutionary search and the XGBoost cost model."""
    # MetaSchedule's own per-trial log lines only with -v (our progress callback reports)
    quiet = logging.getLogger("tvm_mpq").getEffectiveLevel() > logging.DEBUG
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(
        logging.WARNING if quiet else logging.DEBUG)
    mod = ta.tvm().IRModule({"main": space.workload(spec)})
    target = ta.target_c()
    ctx = ms.TuneContext(mod=mod, target=target, space_generator=design_space(seed),
                         search_strategy=ms.search_strategy.EvolutionarySearch(
                             population_size=16, init_measured_ratio=0.0,
                             init_min_unmeasured=8, genetic_num_iters=2,
                             genetic_mutate_prob=0.85, genetic_max_fail_count=4,
                             eps_greedy=0.25),
                         task_name=space.tuning_key(spec), rand_state=seed + 1,
                         num_threads=1).clone()
    callbacks = ms.measure_callback.MeasureCallback.create("default")
    if callback is not None:
        callbacks = list(callbacks) + [callback]
    (work_dir / "database").mkdir(parents=True, exist_ok=True)
    database = ms.database.JSONDatabase(work_dir=str(work_dir / "database"))
    cost_model = ms.cost_model.XGBModel(
        extractor=ms.feature_extractor.PerStoreFeature(), adaptive_training=False,
        num_tuning_cores=1)
    ms.tune.tune_tasks(tasks=[ctx], task_weights=[1.0], work_dir=str(work_dir / "ms"),
                       max_trials_global=trials, max_trials_per_task=trials,
                       num_trials_per_iter=min(trials, 8), builder=builder, runner=runner,
                       database=database, cost_model=cost_model,
                       measure_callbacks=callbacks, task_scheduler="round-robin")
