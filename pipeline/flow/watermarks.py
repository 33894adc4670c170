"""Event-time watermarks per input partition, as Flink and Kafka Streams keep them.

Stage 1 tracks, for each input partition it owns, the newest event time it has
routed and whether the partition is *idle* (caught up to its end offset and
silent for ``idle_s``). Every internal record that carries a watermark carries
this report (``InputMarks``) for all the partitions the sending process owns,
and says how many input partitions the topic has.

Stage 2 merges the reports it receives (``Frontier``): the frontier is the
minimum over **all** input partitions of their newest event time; idle ones do
not hold it back (and when every partition is idle, the newest of all counts,
so a quiet stream still closes its windows). A partition nobody has reported
yet holds it: the frontier is undefined until every partition has spoken. The
detection watermark is the frontier minus the allowed lateness.

Why a report is safe to act on: stage 1 sends a partition's events to a
stage-2 partition before (or in the same record as) any report that covers
them, and one producer keeps the order of one partition. So once the frontier
passes ``t`` at a stage-2 partition, every event at or before ``t`` routed
there has already arrived, whatever order Kafka handed the input partitions
over in. See docs/event-time.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: A report's JSON form: ``{"n": partitions, "p": {"3": [newest | None, idle 0/1]}}``.
MarksJSON = dict[str, Any]


@dataclass(slots=True)
class InputMarks:
    """One stage-1 process's view of the input partitions it owns."""

    #: how many partitions the input topic has (all of them must be heard from)
    partitions: int
    #: input partition -> (newest event time routed, idle?)
    parts: dict[int, tuple[int | None, bool]] = field(default_factory=dict)

    def to_json(self) -> MarksJSON:
        return {
            "n": self.partitions,
            "p": {str(p): [newest, int(idle)] for p, (newest, idle) in self.parts.items()},
        }

    @classmethod
    def from_json(cls, value: Any) -> InputMarks | None:
        """A report, or None. A bare number is the layout before per-partition
        marks: one stream whose newest event time it is."""
        if value is None:
            return None
        if isinstance(value, int):
            return cls(1, {0: (value, False)})
        parts = {int(p): (v[0], bool(v[1])) for p, v in value.get("p", {}).items()}
        return cls(int(value.get("n", 1)), parts)


@dataclass(slots=True)
class _Input:
    newest: int | None = None
    idle: bool = False
    #: monotonic time of the last record read from the partition
    last_data: float = 0.0
    #: offset of the last record read (None: nothing read since assignment)
    offset: int | None = None


class InputTracker:
    """Stage 1's bookkeeping of the input partitions it owns (no I/O: callers pass
    the clock and whether each partition is caught up to its end offset)."""

    def __init__(self, partitions: int, idle_s: float) -> None:
        self.partitions = partitions
        self.idle_s = idle_s
        self._inputs: dict[int, _Input] = {}

    def assign(self, partitions: set[int], now: float) -> None:
        for p in partitions:
            if p not in self._inputs:
                self._inputs[p] = _Input(last_data=now)

    def revoke(self, partitions: set[int]) -> None:
        """A partition another process now owns: we no longer speak for it."""
        for p in partitions:
            self._inputs.pop(p, None)

    @property
    def owned(self) -> set[int]:
        return set(self._inputs)

    def observe(
        self, partition: int, newest: int | None, now: float, offset: int | None = None
    ) -> None:
        """A record of ``partition`` was read (``newest``: its newest valid event time)."""
        state = self._inputs.get(partition)
        if state is None:
            state = self._inputs[partition] = _Input()
        state.last_data = now
        if offset is not None:
            state.offset = offset if state.offset is None else max(state.offset, offset)
        state.idle = False
        if newest is not None and (state.newest is None or newest > state.newest):
            state.newest = newest

    def tick(self, now: float, caught_up: dict[int, bool]) -> bool:
        """Mark partitions idle (caught up and silent for ``idle_s``) or active
        again; True when any partition changed state."""
        changed = False
        for p, state in self._inputs.items():
            idle = bool(caught_up.get(p)) and now - state.last_data >= self.idle_s
            if idle != state.idle:
                state.idle = idle
                changed = True
        return changed

    def is_idle(self, partition: int) -> bool:
        state = self._inputs.get(partition)
        return state is not None and state.idle

    def read_up_to(self, partition: int) -> int | None:
        """The offset of the last record read from ``partition`` since assignment."""
        state = self._inputs.get(partition)
        return None if state is None else state.offset

    def report(self) -> InputMarks:
        return InputMarks(
            self.partitions, {p: (s.newest, s.idle) for p, s in sorted(self._inputs.items())}
        )

    @property
    def newest(self) -> int | None:
        times = [s.newest for s in self._inputs.values() if s.newest is not None]
        return max(times) if times else None

    def ahead(self, max_skew_ms: int) -> set[int]:
        """Active partitions more than ``max_skew_ms`` of event time ahead of the
        slowest active one this process owns (watermark alignment: pausing them
        bounds the state that waits for the slow one)."""
        active = {p: s.newest for p, s in self._inputs.items() if not s.idle}
        if any(t is None for t in active.values()) or len(active) < 2:
            return set()
        slowest = min(t for t in active.values() if t is not None)
        return {p for p, t in active.items() if t is not None and t > slowest + max_skew_ms}


class Frontier:
    """Stage 2's merge of the reports of every stage-1 process (JSON-able state)."""

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        state = state or {}
        self.partitions: int = int(state.get("n", 0))
        self.parts: dict[str, list[Any]] = {k: list(v) for k, v in state.get("p", {}).items()}

    @property
    def state(self) -> dict[str, Any]:
        return {"n": self.partitions, "p": self.parts}

    def merge(self, marks: InputMarks) -> None:
        """Newest event times only grow; the idle flag is the latest report's."""
        self.partitions = marks.partitions
        for p, (newest, idle) in marks.parts.items():
            key = str(p)
            old = self.parts.get(key)
            if old is not None and old[0] is not None:
                newest = old[0] if newest is None else max(old[0], newest)
            self.parts[key] = [newest, int(idle)]

    def value(self) -> int | None:
        """The minimum newest event time over all input partitions (see the module doc)."""
        if self.partitions <= 0:
            return None
        entries = [self.parts.get(str(p)) for p in range(self.partitions)]
        if any(e is None for e in entries):
            return None  # a partition nobody has reported on yet holds the frontier
        active: list[int | None] = [e[0] for e in entries if e is not None and not e[1]]
        if active:
            if any(t is None for t in active):
                return None  # owned, not idle, nothing read yet: it holds too
            return min(int(t) for t in active if t is not None)
        times = [int(e[0]) for e in entries if e is not None and e[0] is not None]
        return max(times) if times else None

    @property
    def newest(self) -> int | None:
        times = [v[0] for v in self.parts.values() if v[0] is not None]
        return max(times) if times else None
