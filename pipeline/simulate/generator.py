"""The event stream: tasks spawned on a simulated clock, merged in event-time order.

A discrete-event simulation: every task in flight is one entry in a heap (its
next event and the generator that makes the rest), so memory stays flat
however many tasks overlap, and events come out in event-time order. Task
starts are a Poisson process whose rate is tuned so that the stream carries
``rate / speed`` events per simulated second: published at ``rate`` events per
wall second, the simulated clock then runs ``speed`` times faster than the
wall clock.

Determinism: the world and every choice come from ``seed``; event ids also mix
in ``start_ms``, so two runs of the same seed at different times never collide
on the pipeline's dedup key.

SP-03 needs seven days of event time: once a break-glass credential has been
pending for ``SP03_JUMP_AFTER_MS`` (10 simulated minutes), the spawn clock jumps
past its window (in-flight tasks still finish first, so no clean task is cut).
``sp03_jump=False`` turns this off (use a high ``speed`` instead).

Capacity: approvals need a free human, so approval cases (RS-01/02/04/06/07) are
skipped while every approver of the platform is booked more than 5 minutes ahead,
and RS-03 needs an always-yes approver idle for a day (eight of them: at most eight
RS-03 cases per simulated day). A skipped case becomes a clean task; ``stats.injected``
counts the cases actually made.
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.simulate.scenarios import (
    DAY,
    DETECTOR_IDS,
    HOUR,
    INJECTORS,
    MINUTE,
    Ctx,
    Event,
    Timed,
    clean_task,
)
from pipeline.simulate.world import World, build_world

#: How long SP-03 credentials are held before the window is closed.
SP03_HOLD_MS = 7 * DAY + HOUR
#: How long an SP-03 case waits (simulated time) before the clock jumps: cases that
#: arrive meanwhile share the jump, so a live run jumps at most once per this period.
SP03_JUMP_AFTER_MS = 10 * MINUTE
#: How far past the last open deadline ``finish()`` puts its closing task: the worker's
#: allowed lateness (5 min by default) plus the detectors' own grace (AT-02: 5 min).
CLOSING_MARGIN_MS = 15 * MINUTE
_PLATFORM_WEIGHTS = (0.3, 0.25, 0.2, 0.25)


@dataclass
class SimStats:
    events: int = 0
    tasks: int = 0
    #: injected cases per detector (one expected finding each)
    injected: Counter[str] = field(default_factory=Counter)
    injected_events: int = 0
    jumps: int = 0


def parse_violations(spec: str | None, rate_all: float | None = None) -> dict[str, float]:
    """``"SP-01=0.02,RS-01=0.05"`` (and a rate for every detector) → {id: probability}."""
    rates: dict[str, float] = {}
    if rate_all:
        rates = dict.fromkeys(DETECTOR_IDS, float(rate_all))
    for part in (spec or "").split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        det = name.strip().upper()
        if sep and det not in INJECTORS and _registered(det):
            raise ValueError(
                f"{det} has no simulator injector: only built-in detections can be injected"
            )
        if not sep or det not in INJECTORS:
            raise ValueError(
                f"bad violation {part!r}: expected ID=RATE with ID one of {', '.join(DETECTOR_IDS)}"
            )
        try:
            rates[det] = float(value)
        except ValueError:
            raise ValueError(f"bad rate in {part!r}: not a number") from None
    check_violations(rates)
    return {k: v for k, v in rates.items() if v > 0}


def _registered(det: str) -> bool:
    from pipeline.detectors.registry import all_detectors

    return any(d.spec.id == det for d in all_detectors())


def check_violations(rates: Mapping[str, float]) -> None:
    for det, p in rates.items():
        if det not in INJECTORS:
            raise ValueError(f"unknown detector id {det!r}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"rate for {det} must be within 0..1, got {p}")
    total = sum(rates.values())
    if total > 1.0:
        raise ValueError(
            "violation rates are probabilities per task and must add up to at most 1 "
            f"(got {total:.3f})"
        )


class Simulator:
    """Realistic agent traffic with injected violations, deterministic for a seed.

    ``Simulator(seed, start_ms=..., rate=..., speed=..., violations={"SP-01": 0.02})``;
    iterate it (endless), take ``events(n)``, ``until(t_ms)``, and ``finish()`` to
    complete the tasks still in flight. ``registry()`` is the identity registry that
    matches the traffic.
    """

    def __init__(
        self,
        seed: int = 7,
        *,
        start_ms: int | None = None,
        rate: float = 200.0,
        speed: float = 1.0,
        violations: Mapping[str, float] | None = None,
        sp03_jump: bool = True,
        world: World | None = None,
    ) -> None:
        if rate <= 0 or speed <= 0:
            raise ValueError("rate and speed must be positive")
        self.seed = seed
        self.start_ms = int(time.time() * 1000) if start_ms is None else int(start_ms)
        self.world = world or build_world(seed)
        self.rate = rate
        self.speed = speed
        self.violations = dict(violations or {})
        check_violations(self.violations)
        self.sp03_jump = sp03_jump
        self._rng = random.Random(f"behaviour:{seed}")
        self._ctx = Ctx(self.world, self._rng, random.Random(f"ids:{seed}:{self.start_ms}"))
        #: heap of int keys (event_time << 32 | tie-break): int comparisons keep it fast
        #: with 100k+ tasks in flight; the payload of a key is (event, rest of its flow,
        #: events of the flow so far)
        self._heap: list[int] = []
        self._payload: dict[int, tuple[Event, Iterator[Timed], int]] = {}
        self._done_tasks = 0
        self._done_events = 0
        self._jumped_ms = 0
        self._seq = itertools.count()
        self._next_spawn = float(self.start_ms)  # fractional ms: > 1000 task starts per second
        self._per_task = 9.0  # events per task, re-estimated as the run goes
        self._cum = list(itertools.accumulate(_PLATFORM_WEIGHTS))
        self._forced: list[str] = []
        self.clock_ms = self.start_ms
        self.stats = SimStats()
        self.stats.injected = self._ctx.case_counts

    # ---- public API ------------------------------------------------------------------

    def registry(self) -> list[dict[str, Any]]:
        return self.world.registry()

    def registry_yaml(self) -> str:
        return self.world.registry_yaml()

    @property
    def elapsed_ms(self) -> int:
        """Simulated time covered so far, clock jumps excluded (for pacing a live run)."""
        return int(self._next_spawn) - self.start_ms - self._jumped_ms

    def inject(self, detector: str) -> None:
        """Make the next task an injected case of ``detector`` (tests, demos)."""
        if detector not in INJECTORS:
            raise ValueError(f"unknown detector id {detector!r}")
        self._forced.append(detector)

    def __iter__(self) -> Iterator[Event]:
        while True:
            yield self._next()

    def events(self, n: int) -> list[Event]:
        """The next ``n`` events of the stream."""
        nxt = self._next
        return [nxt() for _ in range(n)]

    def until(self, t_ms: int) -> Iterator[Event]:
        """Events with ``event_time <= t_ms`` (spawning tasks as needed)."""
        while True:
            self._fill(t_ms)
            if not self._heap or self._heap[0] >> 32 > t_ms:
                return
            yield self._pop()

    def finish(self) -> Iterator[Event]:
        """Complete every task in flight without starting new ones, so a stopped run leaves
        no clean task looking like a violation. If injected cases were made, one last clean
        task ``CLOSING_MARGIN_MS`` after the latest of them (or after SP-02's grace and
        SP-03's window) moves the pipeline's watermark past them, so every case is judged."""
        while self._heap:
            yield self._pop()
        ctx = self._ctx
        deadline = max(ctx.deadlines, default=0)
        if ctx.pending_privileged and self.sp03_jump:
            deadline = max(deadline, max(ctx.pending_privileged) + SP03_HOLD_MS)
            ctx.pending_privileged.clear()
            self.stats.jumps += 1
        ctx.deadlines.clear()
        if deadline and deadline + CLOSING_MARGIN_MS > self.clock_ms:
            self._push(clean_task(ctx, self.world.platforms[0], deadline + CLOSING_MARGIN_MS))
            while self._heap:
                yield self._pop()

    # ---- machinery -------------------------------------------------------------------

    def _push(self, flow: Iterator[Timed]) -> None:
        first = next(flow, None)
        if first is not None:
            key = (first[0] << 32) | (next(self._seq) & 0xFFFFFFFF)
            self._payload[key] = (first[1], flow, 1)
            heapq.heappush(self._heap, key)

    def _pop(self) -> Event:
        key = heapq.heappop(self._heap)
        event, flow, n = self._payload.pop(key)
        t = key >> 32
        nxt = next(flow, None)
        if nxt is not None:
            key = (nxt[0] << 32) | (next(self._seq) & 0xFFFFFFFF)
            self._payload[key] = (nxt[1], flow, n + 1)
            heapq.heappush(self._heap, key)
        else:
            self._done_tasks += 1
            self._done_events += n
        self.clock_ms = t
        self.stats.events += 1
        attrs = event.get("attributes")
        if attrs and "sim.injected" in attrs:
            self.stats.injected_events += 1
        return event

    def _next(self) -> Event:
        heap = self._heap
        while not heap or heap[0] >> 32 > self._next_spawn:
            self._spawn()
        return self._pop()

    def _fill(self, t_ms: int) -> None:
        while self._next_spawn <= t_ms and (
            not self._heap or self._heap[0] >> 32 > self._next_spawn
        ):
            self._spawn()

    def _spawn(self) -> None:
        rng = self._rng
        spawn_at = self._next_spawn
        t = int(spawn_at)
        pending = self._ctx.pending_privileged
        if pending and self.sp03_jump and t >= min(pending) + SP03_JUMP_AFTER_MS:
            jumped = max(t, max(pending) + SP03_HOLD_MS)
            self._jumped_ms += jumped - t
            spawn_at += jumped - t
            t = jumped
            pending.clear()
            self.stats.jumps += 1
        pw = self.world.platforms[self._pick_platform(rng.random())]
        det = self._forced.pop(0) if self._forced else self._pick_violation(rng)
        case = INJECTORS[det](self._ctx, pw, t) if det is not None else None
        if case:
            self._ctx.deadlines.append(case[-1][0])  # finish() carries event time past it
            self._push(iter(case))
        else:
            self._push(clean_task(self._ctx, pw, t))
        self.stats.tasks += 1
        if self._done_tasks >= 50:
            self._per_task = self._done_events / self._done_tasks
        # Poisson task starts at density / per_task, slowed down while the events emitted so
        # far run ahead of the target count (never sped up: tasks in flight emit their later
        # events anyway, so a faster start after the thin first seconds would overshoot).
        density = self.rate / self.speed  # events per simulated second
        target = density * (t - self.start_ms - self._jumped_ms) / 1000.0
        slack = max(20.0, density)
        nudge = min(1.0, max(0.25, (target + slack) / (self.stats.events + slack)))
        gap_ms = rng.expovariate(density * nudge / self._per_task) * 1000.0
        self._next_spawn = spawn_at + gap_ms

    def _pick_platform(self, u: float) -> int:
        for i, c in enumerate(self._cum):
            if u < c:
                return i
        return len(self._cum) - 1

    def _pick_violation(self, rng: random.Random) -> str | None:
        if not self.violations:
            return None
        u = rng.random()
        acc = 0.0
        for det in DETECTOR_IDS:
            p = self.violations.get(det)
            if p:
                acc += p
                if u < acc:
                    return det
        return None


# ---- hostile input -----------------------------------------------------------------------


class DirtyRecords:
    """Hostile or broken records for the dead-letter path (``--dirty-rate``).

    Kinds: not JSON (truncated text, binary garbage), wrong types, missing required
    fields, unknown ``event_type``, and (``binary=True`` only) an Avro frame with an
    unknown schema id. They come from their own random stream, so adding dirt does not
    change the clean events of a seed.
    """

    KINDS = (
        "truncated_json",
        "wrong_types",
        "missing_fields",
        "unknown_type",
        "not_an_event",
        "binary_garbage",
        "unknown_schema_id",
    )

    def __init__(self, seed: int, binary: bool = True) -> None:
        self._rng = random.Random(f"dirty:{seed}")
        self._kinds = self.KINDS if binary else self.KINDS[:5]
        self.counts: Counter[str] = Counter()

    def make(self, template: Mapping[str, Any]) -> bytes:
        """One bad record, shaped after a good event so it looks plausible."""
        rng = self._rng
        kind = rng.choice(self._kinds)
        self.counts[kind] += 1
        ev = dict(template)
        ev.pop("attributes", None)
        if kind == "truncated_json":
            text = orjson.dumps(ev)
            return text[: max(1, rng.randint(len(text) // 4, len(text) - 2))]
        if kind == "wrong_types":
            ev["event_time"] = rng.choice(["yesterday", True, [1, 2]])
            ev["latency_ms"] = "fast"
            ev["scopes"] = "crm.read"
            return orjson.dumps(ev)
        if kind == "missing_fields":
            for name in rng.sample(["event_id", "event_type", "event_time", "platform"], 2):
                ev.pop(name, None)
            return orjson.dumps(ev)
        if kind == "unknown_type":
            ev["event_type"] = rng.choice(["agent.teleported", "ACTION!", "credential.leaked"])
            return orjson.dumps(ev)
        if kind == "not_an_event":
            return rng.choice([b'"just a string"', b"42", b"null", b"[1, 2, 3]", b"{}"])
        if kind == "binary_garbage":
            return bytes([0x7F]) + rng.randbytes(rng.randint(8, 64))
        return b"\x00" + (9_999).to_bytes(4, "big") + rng.randbytes(rng.randint(4, 32))
