"""The static arena planner: no live overlap, chain peak == chain model + scratch, skip
connections handled, deterministic."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from tvm_mpq.codegen.memory_plan import ALIGN, Buffer, plan_memory


def _align(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _check_no_overlap(plan):
    bs = plan.buffers
    for i, a in enumerate(bs):
        assert a.offset + a.size <= plan.arena_bytes
        for b in bs[i + 1:]:
            if not (a.last < b.first or b.last < a.first):
                assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset, (a, b)


def _chain(sizes, scratch=None):
    bufs = [Buffer(f"t{i}", s, i, i + 1) for i, s in enumerate(sizes)]
    for i, s in (scratch or {}).items():
        bufs.append(Buffer(f"s{i}", s, i, i, kind="scratch"))
    return bufs


@given(sizes=st.lists(st.integers(1, 5000), min_size=1, max_size=20),
       scratch=st.dictionaries(st.integers(0, 20), st.integers(1, 700), max_size=5))
def test_chain_peak_is_chain_model_plus_scratch(sizes, scratch):
    scratch = {k: v for k, v in scratch.items() if k <= len(sizes)}
    plan = plan_memory(_chain(sizes, scratch))
    _check_no_overlap(plan)
    # chain model: at step i, layer i reads t_{i-1} and writes t_i (+ its scratch)
    n_steps = len(sizes) + 1
    need = 0
    for s in range(n_steps):
        live = [_align(sizes[j]) for j in (s - 1, s) if 0 <= j < len(sizes)]
        need = max(need, sum(live) + _align(scratch.get(s, 0)))
    assert plan.arena_bytes <= need


def test_skip_connection():
    # t0 is used by step 1 and by the add at step 3 (a residual block)
    bufs = [Buffer("t0", 1000, 0, 3), Buffer("t1", 800, 1, 2), Buffer("t2", 1000, 2, 3),
            Buffer("t3", 1000, 3, 4)]
    plan = plan_memory(bufs)
    _check_no_overlap(plan)
    assert plan.strategy == "greedy_by_size"
    assert plan.arena_bytes >= 3 * _align(1000)       # t0, t2, t3 live together at step 3
    assert plan.arena_bytes <= 3 * _align(1000) + _align(800)


@settings(max_examples=50)
@given(st.lists(st.tuples(st.integers(1, 3000), st.integers(0, 10), st.integers(0, 4)),
                min_size=1, max_size=25))
def test_random_graphs_never_overlap(items):
    bufs = [Buffer(f"b{i}", s, f, f + d) for i, (s, f, d) in enumerate(items)]
    plan = plan_memory(bufs)
    _check_no_overlap(plan)
    assert plan.arena_bytes >= max(plan.step_peaks)


def test_deterministic():
    rng = random.Random(0)
    bufs = [Buffer(f"b{i}", rng.randint(1, 999), i, i + rng.randint(0, 3)) for i in range(30)]
    a = plan_memory(bufs).to_json()
    b = plan_memory(list(reversed(bufs))).to_json()
    assert a["arena_bytes"] == b["arena_bytes"]
    assert a == plan_memory(bufs).to_json()
