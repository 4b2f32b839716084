"""The static memory plan: one arena for every activation tensor and kernel scratch buffer.

Each buffer has a size and a lifetime [first, last] in layer steps; two buffers may share
bytes only when their lifetimes do not overlap. Two placements are computed and the smaller
arena is kept (ties: the first):

- `two_ended` (chains): a layer reads from one end of the arena and writes at the other,
  scratch in between; for a chain its peak is exactly max over layers of
  in + out + scratch, the chain model of the method plus scratch.
- `greedy_by_size` (any graph, e.g. skip connections): largest buffers first, each at the
  lowest offset that does not overlap a placed buffer alive at the same time (as TFLM's
  greedy planner and TVM's USMP greedy_by_size).

The model input and output are not in the arena (the runtime passes them in). Offsets are
aligned to ALIGN bytes. Deterministic: ties are broken by step and name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALIGN = 8


@dataclass
class Buffer:
    name: str
    size: int
    first: int
    last: int
    kind: str = "activation"       # or "scratch"
    offset: int = -1

    def overlaps(self, other: "Buffer") -> bool:
        return not (self.last < other.first or other.last < self.first)


@dataclass
class MemoryPlan:
    arena_bytes: int
    buffers: list[Buffer]
    strategy: str
    step_peaks: list[int] = field(default_factory=list)   # live bytes per step

    def offset(self, name: str) -> int:
        return next(b.offset for b in self.buffers if b.name == name)

    def to_json(self) -> dict:
        return {"arena_bytes": self.arena_bytes, "strategy": self.strategy,
                "buffers": [{"name": b.name, "kind": b.kind, "bytes": b.size,
                             "offset": b.offset, "first_step": b.first, "last_step": b.last}
                            for b in self.buffers]}


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def step_peaks(buffers: list[Buffer], n_steps: int) -> list[int]:
    return [sum(_align(b.size) for b in buffers if b.first <= s <= b.last) for s in range(n_steps)]


def _greedy_by_size(buffers: list[Buffer]) -> int:
    placed: list[Buffer] = []
    for b in sorted(buffers, key=lambda b: (-b.size, b.first, b.name)):
        conflicts = sorted((p for p in placed if p.overlaps(b)), key=lambda p: p.offset)
        off = 0
        for p in conflicts:
            if off + _align(b.size) <= p.offset:
                break
            off = max(off, p.offset + _align(p.size))
        b.offset = off
        placed.append(b)
    return max((b.offset + _align(b.size) for b in buffers), default=0)


def _is_chain(buffers: list[Buffer]) -> bool:
    acts = [b for b in buffers if b.kind == "activation"]
    for s in range(max((b.last for b in buffers), default=-1) + 1):
        if sum(1 for b in acts if b.first <= s <= b.last) > 2:
            return False
    return all(b.last - b.first <= 1 for b in acts)


def _two_ended(buffers: list[Buffer]) -> int | None:
    """Alternate activations between the bottom and the top of the arena; None if the
    graph is not a chain."""
    if not _is_chain(buffers):
        return None
    acts = sorted((b for b in buffers if b.kind == "activation"), key=lambda b: (b.first, b.name))
    n_steps = max((b.last for b in buffers), default=-1) + 1
    need = 0
    for s in range(n_steps):
        live = sum(_align(b.size) for b in buffers if b.first <= s <= b.last)
        need = max(need, live)
    for i, b in enumerate(acts):
        b.offset = 0 if i % 2 == 0 else need - _align(b.size)
    for b in (b for b in buffers if b.kind == "scratch"):
        bottom = sum(_align(a.size) for a in acts if a.offset == 0 and a.first <= b.first <= a.last)
        b.offset = bottom
    return need


def plan_memory(buffers: list[Buffer]) -> MemoryPlan:
    n_steps = max((b.last for b in buffers), default=-1) + 1
    candidates = []
    for name, algo in (("two_ended", _two_ended), ("greedy_by_size", _greedy_by_size)):
        trial = [Buffer(b.name, b.size, b.first, b.last, b.kind) for b in buffers]
        size = algo(trial)
        if size is not None:
            candidates.append((size, name, trial))
    size, name, placed = min(candidates, key=lambda c: c[0])
    _verify(placed)
    order = {b.name: i for i, b in enumerate(buffers)}
    placed.sort(key=lambda b: order[b.name])
    return MemoryPlan(size, placed, name, step_peaks(placed, n_steps))


def _verify(buffers: list[Buffer]) -> None:
    for i, a in enumerate(buffers):
        assert a.offset >= 0 and a.offset % ALIGN == 0, a
        for b in buffers[i + 1:]:
            if a.overlaps(b):
                assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset, (a, b)
