"""Pre-aggregated metric deltas: what stage 1 and stage 2 send to the metrics agent.

faust pays per Kafka record and per Table update, so nothing here is per event: a
whole batch is folded into ONE delta per (window, dimension) before it is sent, and
the metrics agent adds deltas into its windows (``windows.MetricWindows``).

A delta is plain JSON (it travels on an internal topic and may sit in a Table)::

    {"w": window_size_ms, "ws": window_start,
     "dim": "global"|"platform"|"team"|"identity"|"mode",
     "val": dimension value ("all" for global), "n": source items folded in,
     "c": {counter: int}, "h": {histogram: {bucket: count}}, "a": {detector: count}}

``n`` is how many events / outcomes the delta carries: when a delta arrives too late
to be applied, ``n`` is what the ``late_events`` of the current window grows by.
Counters may be negative (corrections, e.g. a finding that arrives after its task was
counted safe). Histograms use the fixed log buckets of ``histogram.py``.

Dimensions of an item: ``global`` always; ``platform``, ``team`` (the identity's team
from the registry), ``identity`` (``identity_id``) and ``mode`` (the registry mode of a
known identity: ``autonomous`` when the registry gives none) when known — an item
with no team is in no team window, never in a made-up "unknown" team, and an item
whose identity the registry does not know is in no mode window.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypedDict

from pipeline.metrics.histogram import bucket_of, merge_into

Dimension = Literal["global", "platform", "team", "identity", "mode"]
DIMENSIONS: Final[tuple[Dimension, ...]] = ("global", "platform", "team", "identity", "mode")
DIMENSION_ORDER: Final[Mapping[str, int]] = {d: i for i, d in enumerate(DIMENSIONS)}
GLOBAL_VALUE: Final = "all"
#: The mode of a known identity whose registry entry has none (keys.DEFAULT_MODE).
DEFAULT_MODE: Final = "autonomous"

Counter = Literal[
    "tasks_completed",
    "tasks_succeeded",
    "tasks_safe",
    "actions_total",
    "actions_authorized",
    "actions_attributable",
    "actions_with_credential",
    "actions_ephemeral",
    "task_credentials_completed",
    "task_credentials_revoked",
    "approvals_decided",
    "approvals_meaningful",
    "alerts_total",
    "late_events",
]
COUNTERS: Final[tuple[str, ...]] = Counter.__args__  # type: ignore[attr-defined]
REVIEW_SECONDS: Final = "review_seconds"
ACTION_LATENCY_MS: Final = "action_latency_ms"
HISTOGRAMS: Final = (REVIEW_SECONDS, ACTION_LATENCY_MS)

HOUR_MS: Final = 3_600_000
DAY_MS: Final = 24 * HOUR_MS


class Delta(TypedDict):
    w: int
    ws: int
    dim: str
    val: str
    n: int
    c: dict[str, int]
    h: dict[str, dict[str, int]]
    a: dict[str, int]


# ---- outcomes stage 2 knows ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskCompleted:
    """A ``task.completed``: ``safe`` = succeeded and no finding on the task so far."""

    time: int
    platform: str | None
    team: str | None
    identity_id: str | None
    succeeded: bool
    safe: bool
    mode: str | None = None


@dataclass(frozen=True, slots=True)
class TaskCredentialCompleted:
    """A task credential whose grace period after ``task.completed`` has been judged."""

    time: int
    revoked_within_grace: bool
    platform: str | None = None
    team: str | None = None
    identity_id: str | None = None
    mode: str | None = None


@dataclass(frozen=True, slots=True)
class ApprovalDecided:
    """An ``approval.decided``; ``meaningful`` = no RS finding on it (so far)."""

    time: int
    review_seconds: float | None
    meaningful: bool
    platform: str | None = None
    team: str | None = None
    identity_id: str | None = None
    mode: str | None = None


@dataclass(frozen=True, slots=True)
class AlertRaised:
    """Occurrences of a finding (an alert record, Create or Update) at its event time."""

    time: int
    detector: str
    platform: str | None = None
    team: str | None = None
    identity_id: str | None = None
    occurrences: int = 1
    mode: str | None = None


@dataclass(frozen=True, slots=True)
class Correction:
    """Fix a counter already sent, in the window of the original item's ``time``.

    E.g. a finding on a task already counted safe: ``Correction(completed_at,
    "tasks_safe", -1, ...)`` with the completion's own dimensions.
    """

    time: int
    counter: Counter
    amount: int
    platform: str | None = None
    team: str | None = None
    identity_id: str | None = None
    mode: str | None = None


Outcome = TaskCompleted | TaskCredentialCompleted | ApprovalDecided | AlertRaised | Correction


# ---- helpers ---------------------------------------------------------------------------


def check_window_sizes(window_sizes: Sequence[int]) -> tuple[int, ...]:
    """Positive, distinct millisecond sizes, smallest first."""
    sizes = tuple(sorted(set(window_sizes)))
    if not sizes or any(not isinstance(w, int) or w <= 0 for w in sizes):
        raise ValueError(f"window sizes must be positive ms, got {list(window_sizes)!r}")
    return sizes


def window_start(time: int, size: int) -> int:
    """[start, start + size): an event exactly at a boundary opens the next window."""
    return time - time % size


def _new(w: int, ws: int, dim: str, val: str) -> Delta:
    return {"w": w, "ws": ws, "dim": dim, "val": val, "n": 0, "c": {}, "h": {}, "a": {}}


def _sort_key(d: Delta) -> tuple[int, int, int, str]:
    return (d["w"], d["ws"], DIMENSION_ORDER.get(d["dim"], 99), d["val"])


class _Fold:
    """Accumulates items into one delta per (window size, start, dimension, value)."""

    __slots__ = ("out", "sizes")

    def __init__(self, sizes: tuple[int, ...]) -> None:
        self.sizes = sizes
        self.out: dict[tuple[int, int, str, str], Delta] = {}

    def deltas_for(
        self, time: int, platform: Any, team: Any, identity_id: Any, mode: Any = None
    ) -> Iterable[Delta]:
        dims = [("global", GLOBAL_VALUE)]
        if platform is not None:
            dims.append(("platform", str(platform)))
        if team is not None:
            dims.append(("team", str(team)))
        if identity_id is not None:
            dims.append(("identity", str(identity_id)))
        if mode is not None:
            dims.append(("mode", str(mode)))
        out = self.out
        for w in self.sizes:
            ws = time - time % w
            for dim, val in dims:
                key = (w, ws, dim, val)
                delta = out.get(key)
                if delta is None:
                    delta = out[key] = _new(w, ws, dim, val)
                yield delta

    def result(self) -> list[Delta]:
        return sorted(self.out.values(), key=_sort_key)


def _bump(counters: dict[str, int], name: str, amount: int) -> None:
    counters[name] = counters.get(name, 0) + amount


# ---- actions (stage 1 or 2: enriched events) -------------------------------------------


def action_deltas(
    events: Iterable[Mapping[str, Any]],
    window_sizes: Sequence[int],
    *,
    max_ttl_ms: Mapping[str, int],
) -> list[Delta]:
    """Fold the ``action`` events of a batch (others are skipped) into deltas.

    Per action: ``actions_total``; ``actions_authorized`` when ``policy_decision`` is
    allow; ``actions_attributable`` when the registry knows the identity;
    ``actions_with_credential`` when it names a ``credential_id``, and of those
    ``actions_ephemeral`` when the known credential was issued via ``jit`` or its
    lifetime is within the identity kind's max TTL (``max_ttl_ms``: the detectors'
    ``credential_max_lifetime_ms``, policy-effective, ``other`` for other kinds); its
    ``latency_ms`` in the ``action_latency_ms`` histogram.

    Fast path (~1 µs an event): each event is counted into a cell keyed by everything
    a delta can tell apart (one tuple, one dict update), cells are summed per subject
    (tick, platform, team, identity, mode), and only subjects are spread over window sizes
    and dimensions; a batch has few subjects, so that part does not grow with it.
    """
    sizes = check_window_sizes(window_sizes)
    step = math.gcd(*sizes)
    ttl_other = int(max_ttl_ms.get("other", DAY_MS))
    ttl_of = max_ttl_ms.get
    cells: dict[tuple[Any, ...], int] = {}
    cell = cells.get
    for e in events:
        if e.get("event_type") != "action":
            continue
        t = e.get("event_time")
        if type(t) is not int:
            continue  # validated upstream; never let a stray value break the batch
        ident = e.get("identity")
        if ident:
            known = ident.get("known") is True
            team = ident.get("team")
            kind = ident.get("kind")
            mode = (ident.get("mode") or DEFAULT_MODE) if known else None
        else:
            known, team, kind, mode = False, None, None, None
        if e.get("credential_id") is None:
            with_cred = ephemeral = False
        else:
            with_cred = True
            cred = e.get("credential")
            if cred and cred.get("known") is True:
                if cred.get("issued_via") == "jit":
                    ephemeral = True
                else:
                    life = cred.get("lifetime_ms")
                    ephemeral = life is not None and life <= ttl_of(kind or "", ttl_other)
            else:
                ephemeral = False
        lat = e.get("latency_ms")
        bucket = bucket_of(lat) if type(lat) is int else None
        key = (
            t // step,
            e.get("platform"),
            team,
            e.get("identity_id"),
            mode,
            e.get("policy_decision") == "allow",
            known,
            with_cred,
            ephemeral,
            bucket,
        )
        cells[key] = cell(key, 0) + 1

    # cells -> subjects (one per tick, platform, team, identity, mode): few, whatever the batch
    subjects: dict[tuple[Any, ...], list[Any]] = {}
    for (
        tick,
        platform,
        team,
        iid,
        mode,
        allowed,
        known,
        with_cred,
        ephemeral,
        bucket,
    ), n in cells.items():
        skey = (tick, platform, team, iid, mode)
        acc = subjects.get(skey)
        if acc is None:
            acc = subjects[skey] = [0, 0, 0, 0, 0, {}]
        acc[0] += n
        if allowed:
            acc[1] += n
        if known:
            acc[2] += n
        if with_cred:
            acc[3] += n
        if ephemeral:
            acc[4] += n
        if bucket is not None:
            hist = acc[5]
            hist[bucket] = hist.get(bucket, 0) + n

    fold = _Fold(sizes)
    for (tick, platform, team, iid, mode), (
        n,
        allowed,
        known,
        with_cred,
        ephemeral,
        hist,
    ) in subjects.items():
        for d in fold.deltas_for(tick * step, platform, team, iid, mode):
            d["n"] += n
            c = d["c"]
            for name, amount in (
                ("actions_total", n),
                ("actions_authorized", allowed),
                ("actions_attributable", known),
                ("actions_with_credential", with_cred),
                ("actions_ephemeral", ephemeral),
            ):
                c[name] = c.get(name, 0) + amount
            if hist:
                merge_into(d["h"].setdefault(ACTION_LATENCY_MS, {}), hist)
    return fold.result()


# ---- outcomes (stage 2) ----------------------------------------------------------------


def outcome_deltas(outcomes: Iterable[Outcome], window_sizes: Sequence[int]) -> list[Delta]:
    """Fold a batch of mixed outcomes (tasks, credentials, approvals, alerts, corrections).

    One call per batch gives one delta per (window, dimension) for all of them.
    """
    fold = _Fold(check_window_sizes(window_sizes))
    for o in outcomes:
        for d in fold.deltas_for(o.time, o.platform, o.team, o.identity_id, o.mode):
            d["n"] += 1
            c = d["c"]
            if isinstance(o, TaskCompleted):
                _bump(c, "tasks_completed", 1)
                if o.succeeded:
                    _bump(c, "tasks_succeeded", 1)
                    if o.safe:
                        _bump(c, "tasks_safe", 1)
            elif isinstance(o, TaskCredentialCompleted):
                _bump(c, "task_credentials_completed", 1)
                if o.revoked_within_grace:
                    _bump(c, "task_credentials_revoked", 1)
            elif isinstance(o, ApprovalDecided):
                _bump(c, "approvals_decided", 1)
                if o.meaningful:
                    _bump(c, "approvals_meaningful", 1)
                if o.review_seconds is not None:
                    hist = d["h"].setdefault(REVIEW_SECONDS, {})
                    bucket = bucket_of(o.review_seconds)
                    hist[bucket] = hist.get(bucket, 0) + 1
            elif isinstance(o, AlertRaised):
                _bump(c, "alerts_total", o.occurrences)
                _bump(d["a"], o.detector, o.occurrences)
            else:
                if o.counter not in COUNTERS:
                    raise ValueError(f"unknown counter {o.counter!r}")
                _bump(c, o.counter, o.amount)
    return fold.result()


def task_deltas(tasks: Iterable[TaskCompleted], window_sizes: Sequence[int]) -> list[Delta]:
    """``tasks_completed`` / ``tasks_succeeded`` / ``tasks_safe`` (safe implies succeeded)."""
    return outcome_deltas(tasks, window_sizes)


def credential_deltas(
    completions: Iterable[TaskCredentialCompleted], window_sizes: Sequence[int]
) -> list[Delta]:
    """``task_credentials_completed`` / ``task_credentials_revoked``."""
    return outcome_deltas(completions, window_sizes)


def approval_deltas(
    approvals: Iterable[ApprovalDecided], window_sizes: Sequence[int]
) -> list[Delta]:
    """``approvals_decided`` / ``approvals_meaningful`` and the review-time histogram."""
    return outcome_deltas(approvals, window_sizes)


def alert_deltas(alerts: Iterable[AlertRaised], window_sizes: Sequence[int]) -> list[Delta]:
    """``alerts_total`` and ``alerts_by_detector``."""
    return outcome_deltas(alerts, window_sizes)


def correction_deltas(
    corrections: Iterable[Correction], window_sizes: Sequence[int]
) -> list[Delta]:
    """Signed counter fixes in the windows of the items they correct."""
    return outcome_deltas(corrections, window_sizes)


# ---- combining and routing -------------------------------------------------------------


def merge_delta(dst: Delta, src: Delta) -> None:
    """Add ``src`` into ``dst`` (same window and dimension)."""
    dst["n"] += src.get("n", 0)
    for name, amount in src.get("c", {}).items():
        _bump(dst["c"], name, amount)
    for name, hist in src.get("h", {}).items():
        merge_into(dst["h"].setdefault(name, {}), hist)
    for detector, amount in src.get("a", {}).items():
        _bump(dst["a"], detector, amount)


def combine(deltas: Iterable[Delta]) -> list[Delta]:
    """One delta per (window, dimension): e.g. action and outcome deltas of one batch."""
    out: dict[tuple[int, int, str, str], Delta] = {}
    for d in deltas:
        key = (d["w"], d["ws"], d["dim"], d["val"])
        acc = out.get(key)
        if acc is None:
            acc = out[key] = _new(*key)
        merge_delta(acc, d)
    return sorted(out.values(), key=_sort_key)


def routing_key(delta: Delta) -> str:
    """Key of the metrics agent's internal topic: all windows of a dimension value meet."""
    return f"{delta['dim']}|{delta['val']}"
