"""Generic drivers for the window kinds: a detector is a spec plus small pure functions.

Each driver returns a ``Detector`` (``on_events``/``on_watermark``), so the engine
runs it like any other. The vocabulary follows Sigma correlation rules: the group-by
is the spec's ``subject`` (the engine hands a driver one subject's events), the
timespan and threshold are names of thresholds (so a policy file tunes them).

==================  =====================================================================
``single_event``    one finding per matching event (``match`` + ``facts``, or ``judge``)
``event_count``     >= N events in a sliding timespan; one finding per burst, an Update
                    with the final count when the burst grew (RS-02)
``event_ratio``     >= N events of which >= a ratio ``hit``; one finding per timespan (RS-03)
``count_then``      >= N ``counted`` events then a ``trigger`` event within the timespan
``value_count``     >= N distinct values of a field in a sliding timespan (SP-07)
``absence``         A not followed by B within T, judged when the watermark passes A + T
==================  =====================================================================

Conventions. Hooks are pure functions of their arguments. ``single_event`` takes
``match(event) -> bool`` and ``facts(event) -> dict`` for a rule that needs nothing
else; a rule that reads thresholds or the policy, or computes its facts while
deciding, gives ``judge(event, ctx) -> facts | None`` instead (None: no finding).
Windowed hooks get a ``Window`` (the events counted, bounded) and the ``Context``.
The counting drivers hold events until the watermark passes them and consume them in
(event_time, event_id) order (``_ordered.py``): replays are not counted twice, an
event behind the released watermark is skipped, and the findings do not depend on
the order Kafka delivered the events in. Windows are half-open: an event exactly
``timespan`` after another is outside its window.

Example (a whole detector module, besides its ``SPEC``)::

    def match(event: Event) -> bool:
        return event.get("policy_decision") == "deny" and event.get("outcome") == "success"

    def facts(event: Event) -> Facts:
        return {"action": event.get("action"), "policy_id": event.get("policy_id")}

    DETECTOR = single_event(SPEC, match, facts)

    # with thresholds: judge(event, ctx) returns the facts, or None for no finding
    def judge(event: Event, ctx: Context) -> Facts | None:
        lifetime = credential_of(event).get("lifetime_ms")
        limit = ctx.thresholds["max_lifetime_s"] * 1000
        return None if lifetime is None or lifetime <= limit else {"lifetime_ms": lifetime}

    DETECTOR = single_event(SPEC, judge=judge)

    # a windowed rule: >= min_decisions approval.decided per approver in window_s
    DETECTOR = event_count(
        SPEC, fields=("decision",), threshold="min_decisions", timespan="window_s",
        facts=lambda w, ctx: {"decisions_in_window": w.count},
    )
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict, cast

from pipeline.detectors import _ordered as ordered
from pipeline.detectors.base import (
    SECOND,
    SUBJECT_FIELDS,
    Context,
    Detector,
    DetectorSpec,
    Event,
    Finding,
    Severity,
    State,
)
from pipeline.detectors.common import event_context
from pipeline.detectors.registry import UNATTRIBUTED as UNATTRIBUTED  # re-exported for rules
from pipeline.detectors.registry import all_detectors
from pipeline.detectors.windows import (
    DEADLINE,
    distinct_in_window,
    expect,
    expired,
    satisfy,
    set_deadline,
)

Facts = dict[str, Any]
#: A held event as the windowed hooks see it: ``event_time``, ``event_id`` and the
#: driver's declared ``fields`` (only those are kept in state).
Record = Mapping[str, Any]
Match = Callable[[Event], bool]
FactsOf = Callable[[Event], Facts]
Judge = Callable[[Event, Context], Facts | None]
ContextOf = Callable[[Event], dict[str, Any]]
SeverityOf = Callable[[Event], Severity | None]

#: Event ids kept as a windowed finding's evidence (its facts say how many there were).
MAX_EVIDENCE = 20


@dataclass(frozen=True, slots=True)
class Window:
    """What a windowed driver found: ``count`` events in [start, end), ``hits`` of them
    matching the driver's ``hit``; ``records`` the evidence (bounded), ``last`` the
    event that fired or, for a burst's Update, the latest one counted."""

    start: int
    end: int
    count: int
    hits: int
    records: list[Record]
    last: Record


class Burst(TypedDict, total=False):
    """``event_count``'s open burst (its state's ``burst``): [start, end), the events
    counted and the ``hit``s among them, the count already reported, the evidence
    (bounded) and the latest record counted."""

    start: int
    end: int
    count: int
    hits: int
    reported: int
    ids: list[Record]
    last: Record


WindowFacts = Callable[[Window, Context], Facts]
WindowContext = Callable[[Window, Context], dict[str, Any]]
HitOf = Callable[[Record], bool]


# ---- single event -------------------------------------------------------------------


def single_event(
    spec: DetectorSpec,
    match: Match | None = None,
    facts: FactsOf | None = None,
    *,
    judge: Judge | None = None,
    context: ContextOf = event_context,
    severity: SeverityOf | None = None,
) -> Detector:
    """One finding per event that ``match``es (facts from ``facts``), or for which
    ``judge(event, ctx)`` returns facts. The finding's subject is the engine's subject
    (``<unattributed>`` when the event has none), its evidence the event, its context
    ``context(event)`` (the alert subject fields on the event by default) and its
    severity ``severity(event)`` when given and not None (else the spec's)."""
    if judge is None:
        if match is None or facts is None:
            raise TypeError(f"{spec.id}: single_event needs match and facts, or judge")
        judge = _judge_of(match, facts)
    elif match is not None or facts is not None:
        raise TypeError(f"{spec.id}: single_event takes match and facts, or judge, not both")
    decide = judge

    def on_events(ctx: Context, state: State, events: list[Event]) -> list[Finding]:
        findings = []
        for event in events:
            found = decide(event, ctx)
            if found is None:
                continue
            findings.append(
                Finding(
                    detector=ctx.spec.id,
                    subject=ctx.subject or UNATTRIBUTED,
                    event_ids=[str(event["event_id"])],
                    facts=found,
                    time=int(event["event_time"]),
                    context=context(event),
                    severity=severity(event) if severity is not None else None,
                )
            )
        return findings

    return Detector(spec=spec, on_events=on_events, per_event=True)


def _judge_of(match: Match, facts: FactsOf) -> Judge:
    def judge(event: Event, ctx: Context) -> Facts | None:
        return facts(event) if match(event) else None

    return judge


def finding(
    ctx: Context,
    *,
    event_ids: list[str],
    facts: Facts,
    time: int,
    context: dict[str, Any],
    window_start: int | None = None,
    window_end: int | None = None,
    severity: Severity | None = None,
) -> Finding:
    """A finding of ``ctx``'s detector about its subject, for hand-written detectors
    (the drivers build theirs): only what the rule knows is spelled out."""
    return Finding(
        detector=ctx.spec.id,
        subject=ctx.subject,
        event_ids=event_ids,
        facts=facts,
        window_start=window_start,
        window_end=window_end,
        time=time,
        context=context,
        severity=severity,
    )


# ---- shared by the windowed drivers; threshold_ms by hand-written detectors too ------


def threshold_ms(ctx: Context, name: str) -> int:
    """A threshold given in seconds (``window_s``, ``grace_s``), policy-effective, in ms."""
    return int(ctx.thresholds[name] * SECOND)


def _record(fields: tuple[str, ...], held: list[Any]) -> Record:
    return dict(zip(("event_time", "event_id", *fields), held, strict=True))


def subject_context(ctx: Context, last: Record) -> dict[str, Any]:
    """Default context of a windowed finding: the subject under its alert field, plus
    the platform and environment of the last event counted (when kept and non-empty)."""
    out: dict[str, Any] = {SUBJECT_FIELDS[ctx.spec.subject][0]: ctx.subject}
    for name in ("platform", "environment"):
        if last.get(name):
            out[name] = last[name]
    return out


def _window_finding(
    ctx: Context,
    window: Window,
    facts: WindowFacts,
    context: WindowContext | None,
    evidence: list[Record] | None = None,
) -> Finding:
    """The finding of a window: evidence ``evidence`` (default: the window's records),
    ``approval_ids`` every approval among the window's records."""
    approvals = (str(r["approval_id"]) for r in window.records if r.get("approval_id"))
    return Finding(
        detector=ctx.spec.id,
        subject=ctx.subject,
        event_ids=[str(r["event_id"]) for r in (window.records if evidence is None else evidence)],
        facts=facts(window, ctx),
        window_start=window.start,
        window_end=window.end,
        time=int(window.last["event_time"]),
        context=(
            context(window, ctx) if context is not None else subject_context(ctx, window.last)
        ),
        approval_ids=list(dict.fromkeys(approvals)),
    )


Consume = Callable[[Context, State, Record], list[Finding]]
Settle = Callable[[Context, State], tuple[list[Finding], int | None]]


def _no_settle(ctx: Context, state: State) -> tuple[list[Finding], int | None]:
    return [], None


def _in_order(
    spec: DetectorSpec, fields: tuple[str, ...], consume: Consume, settle: Settle = _no_settle
) -> Detector:
    """A detector that holds its events until the watermark passes them, consumes them
    one by one in (event_time, event_id) order, then ``settle``s (findings due at the
    watermark, and a timer of its own); the timer is re-armed for the oldest held."""

    def advance(ctx: Context, state: State) -> list[Finding]:
        findings: list[Finding] = []
        for held in ordered.release(ctx, state):
            findings += consume(ctx, state, _record(fields, held))
        settled, deadline = settle(ctx, state)
        findings += settled
        state.pop(DEADLINE, None)
        due = [d for d in (ordered.next_held(state), deadline) if d is not None]
        if due:
            state[DEADLINE] = min(due)
        return findings

    def on_events(ctx: Context, state: State, events: list[Event]) -> list[Finding]:
        ordered.hold(state, events, *fields)
        return advance(ctx, state)

    return Detector(spec=spec, on_events=on_events, on_watermark=advance)


# ---- event count (bursts) -------------------------------------------------------------


def event_count(
    spec: DetectorSpec,
    *,
    fields: tuple[str, ...],
    threshold: str,
    timespan: str = "window_s",
    facts: WindowFacts,
    hit: HitOf | None = None,
    context: WindowContext | None = None,
    max_recent: int = 1000,
) -> Detector:
    """At least ``thresholds[threshold]`` events within ``thresholds[timespan]`` seconds.

    One burst is one finding: when the sliding count reaches the threshold, the burst
    opens at the first event counted and lasts one timespan. Events inside it join it
    (no new finding); when the watermark passes its end an Update carries the final
    count if it grew. Events after it count afresh, so a long run yields one finding
    per timespan, never one per event. ``hit`` counts a subset (``Window.hits``), e.g.
    approvals among decisions. At most ``max_recent`` events are counted at once.
    """

    def consume(ctx: Context, state: State, record: Record) -> list[Finding]:
        t = int(record["event_time"])
        burst = cast("Burst | None", state.get("burst"))
        if burst is not None and t < burst["end"]:
            _join(burst, record)
            return []
        found = _close(ctx, state) if burst is not None else []
        span = threshold_ms(ctx, timespan)
        recent: list[Record] = [r for r in state.get("recent", []) if r["event_time"] > t - span]
        recent.append(record)
        del recent[: max(len(recent) - max_recent, 0)]
        state["recent"] = recent
        if len(recent) < int(ctx.thresholds[threshold]):
            return found
        start = int(recent[0]["event_time"])
        burst = Burst(start=start, end=start + span, count=0, hits=0, ids=[])
        for r in recent:
            _join(burst, r)
        burst["reported"] = burst["count"]
        state["burst"], state["recent"] = burst, []
        return [*found, _burst_finding(ctx, burst)]

    def _join(burst: Burst, record: Record) -> None:
        burst["count"] += 1
        burst["hits"] += bool(hit(record)) if hit is not None else 0
        burst["last"] = dict(record)
        if len(burst["ids"]) < MAX_EVIDENCE:
            burst["ids"].append(dict(record))

    def _close(ctx: Context, state: State) -> list[Finding]:
        burst = cast("Burst", state.pop("burst"))
        return [_burst_finding(ctx, burst)] if burst["count"] > burst["reported"] else []

    def _burst_finding(ctx: Context, burst: Burst) -> Finding:
        window = Window(
            burst["start"], burst["end"], burst["count"], burst["hits"], burst["ids"], burst["last"]
        )
        return _window_finding(ctx, window, facts, context)

    def settle(ctx: Context, state: State) -> tuple[list[Finding], int | None]:
        burst = cast("Burst | None", state.get("burst"))
        if burst is not None and burst["end"] <= ctx.watermark:
            return _close(ctx, state), None
        return [], burst["end"] if burst is not None else None

    return _in_order(spec, fields, consume, settle)


# ---- ratio ------------------------------------------------------------------------------


def event_ratio(
    spec: DetectorSpec,
    *,
    fields: tuple[str, ...],
    hit: HitOf,
    min_count: str,
    min_ratio: str,
    timespan: str = "window_s",
    facts: WindowFacts,
    context: WindowContext | None = None,
    max_recent: int = 2000,
) -> Detector:
    """At least ``thresholds[min_count]`` events within the timespan, of which at least
    ``thresholds[min_ratio]`` are ``hit``s. Once it fires, [first event counted, +
    timespan) is reported: events inside it are not counted again and the next
    finding needs a fresh window after it. The evidence is the latest events counted;
    past ``max_recent`` events the ratio is over the latest ones."""

    def consume(ctx: Context, state: State, record: Record) -> list[Finding]:
        t = int(record["event_time"])
        reported = state.get("reported_until")
        if reported is not None and t < reported:
            return []  # inside a window already reported
        span = threshold_ms(ctx, timespan)
        recent: list[list[int]] = state.setdefault("recent", [])
        recent.append([t, int(bool(hit(record)))])
        drop = 0
        while drop < len(recent) and recent[drop][0] <= t - span:
            drop += 1
        del recent[: max(drop, len(recent) - max_recent)]
        evidence: list[Record] = state.setdefault("evidence", [])
        evidence.append(dict(record))
        del evidence[: max(len(evidence) - MAX_EVIDENCE, 0)]
        total, hits = len(recent), sum(r[1] for r in recent)
        ratio = float(ctx.thresholds[min_ratio])
        if total < int(ctx.thresholds[min_count]) or hits < ratio * total - 1e-9:
            return []
        start = recent[0][0]
        state["reported_until"] = start + span
        state["recent"], state["evidence"] = [], []
        window = Window(start, start + span, total, hits, evidence, record)
        return [_window_finding(ctx, window, facts, context)]

    return _in_order(spec, fields, consume)


# ---- count, then a trigger ---------------------------------------------------------------


def count_then(
    spec: DetectorSpec,
    *,
    fields: tuple[str, ...],
    counted: HitOf,
    trigger: HitOf,
    threshold: str,
    timespan: str = "window_s",
    facts: WindowFacts,
    context: WindowContext | None = None,
    max_counted: int = 100,
) -> Detector:
    """At least ``thresholds[threshold]`` ``counted`` events, then a ``trigger`` event,
    all within the timespan (e.g. denials, then an approval). The counted events are
    spent by the finding. ``Window.records`` holds the counted events (the latest
    ``max_counted``) then the trigger, the evidence the latest ``MAX_EVIDENCE`` of them
    and the trigger; ``count`` is how many were counted; the window ends at the trigger."""

    def consume(ctx: Context, state: State, record: Record) -> list[Finding]:
        t = int(record["event_time"])
        span = threshold_ms(ctx, timespan)
        seen: list[Record] = [r for r in state.get("counted", []) if r["event_time"] > t - span]
        found: list[Finding] = []
        if counted(record):
            seen.append(dict(record))
            del seen[: max(len(seen) - max_counted, 0)]
        elif trigger(record) and len(seen) >= int(ctx.thresholds[threshold]):
            start = int(seen[0]["event_time"])
            window = Window(start, t, len(seen), len(seen), [*seen, dict(record)], record)
            evidence = [*seen[-MAX_EVIDENCE:], dict(record)]
            found.append(_window_finding(ctx, window, facts, context, evidence))
            seen = []
        state["counted"] = seen
        return found

    return _in_order(spec, fields, consume)


# ---- distinct value count ----------------------------------------------------------------


def value_count(
    spec: DetectorSpec,
    *,
    values: Mapping[str, str],
    timespan: str = "window_s",
    facts: Callable[[Mapping[str, Mapping[str, int]], Context], Facts],
    context: Callable[[Event, Context], dict[str, Any]] | None = None,
) -> Detector:
    """Distinct values of event fields within a sliding timespan: ``values`` maps a
    field to the threshold naming its minimum; any one reached opens an episode (one
    alert, ``window_start`` the earliest use counted) and a new value during it updates
    it; a timespan later a new episode may open. ``facts`` gets field -> {value: last
    seen}. Relies on the engine's hold (``spec.window_ms``) for event-time order."""
    names = tuple(values)

    def on_events(ctx: Context, state: State, events: list[Event]) -> list[Finding]:
        findings = []
        span = threshold_ms(ctx, timespan)
        first_ids: dict[str, str] = state.setdefault("first_event", {})
        for event in events:
            t, event_id = int(event["event_time"]), str(event["event_id"])
            seen: dict[str, dict[str, int]] = {}
            for name in names:
                value = event.get(name)
                if value:
                    seen[name] = distinct_in_window(state, name, t, str(value), span)
                    first_ids.setdefault(f"{name}:{value}", event_id)
                else:
                    seen[name] = state.get(name, {})
            live = {f"{n}:{v}" for n in names for v in seen[n]}
            for key in [k for k in first_ids if k not in live]:
                del first_ids[key]
            sizes = [len(seen[n]) for n in names]
            if all(
                size < int(ctx.thresholds[values[n]]) for n, size in zip(names, sizes, strict=True)
            ):
                continue
            # the open episode: [start, distinct count per field when last reported]
            episode: list[int] | None = state.get("episode")
            if episode is not None and t < int(episode[0]) + span:
                start, reported = int(episode[0]), episode[1:]
                if all(size <= old for size, old in zip(sizes, reported, strict=True)):
                    continue  # nothing new in this episode
            else:
                start = min(v for n in names for v in seen[n].values())
            state["episode"] = [start, *sizes]
            subject_field = SUBJECT_FIELDS[ctx.spec.subject][0]
            findings.append(
                Finding(
                    detector=ctx.spec.id,
                    subject=ctx.subject,
                    event_ids=sorted(set(first_ids.values()) | {event_id}),
                    facts=facts(seen, ctx),
                    window_start=start,
                    window_end=t,
                    time=t,
                    context=(
                        context(event, ctx)
                        if context is not None
                        else event_context(event, **{subject_field: ctx.subject})
                    ),
                )
            )
        return findings

    return Detector(spec=spec, on_events=on_events)


# ---- absence ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Missed:
    """An expectation the watermark passed unmet: ``token`` (what linked A and B), A's
    event time and id, and the deadline A + T."""

    token: str
    started: int
    event_id: str
    deadline: int


def absence(
    spec: DetectorSpec,
    *,
    start: Match,
    end: Match,
    within: str,
    facts: Callable[[Missed, Context], Facts],
    key: Callable[[Event], str | None] = lambda event: "",
    context: ContextOf = event_context,
    max_open: int = 1000,
) -> Detector:
    """A (``start``) not followed by B (``end``) with the same ``key`` within
    ``thresholds[within]`` seconds: judged when the watermark passes A + T, so a B at
    exactly A + T is in time. One finding per A (its evidence and context), at the
    deadline; a replayed A is not judged twice (its token is remembered for one more
    timespan, at most ``max_open`` of them). Give the spec a ``window_ms`` so the
    engine hands the events over in event-time order."""

    def on_events(ctx: Context, state: State, events: list[Event]) -> list[Finding]:
        span = threshold_ms(ctx, within)
        for event in events:
            token = key(event)
            if token is None:
                continue
            t = int(event["event_time"])
            if start(event):
                if token not in state.get("done", {}):
                    payload = [t, str(event["event_id"]), context(event)]
                    expect(state, "open", token, t + span, payload, max_open)
            elif end(event) and satisfy(state, "open", token, t):
                _remember(state, token, t + span, max_open)
        _tidy(state, ctx, span)
        return []

    def on_watermark(ctx: Context, state: State) -> list[Finding]:
        findings = []
        span = threshold_ms(ctx, within)
        for token, (t, event_id, where) in expired(state, "open", ctx.watermark):
            deadline = t + span
            _remember(state, token, deadline, max_open)
            missed = Missed(token, t, event_id, deadline)
            findings.append(
                Finding(
                    detector=ctx.spec.id,
                    subject=ctx.subject,
                    event_ids=[event_id],
                    facts=facts(missed, ctx),
                    window_start=t,
                    window_end=deadline,
                    time=deadline,
                    context=where,
                )
            )
        _tidy(state, ctx, span)
        return findings

    return Detector(spec=spec, on_events=on_events, on_watermark=on_watermark)


def _remember(state: State, token: str, deadline: int, cap: int) -> None:
    done: dict[str, int] = state.setdefault("done", {})
    done[token] = deadline
    while len(done) > cap:
        del done[next(iter(done))]


def _tidy(state: State, ctx: Context, span: int) -> None:
    """Judged tokens are remembered one timespan past their deadline (a replay comes
    sooner), then forgotten, so a finished subject's state empties and the engine
    drops it; the timer is the earliest open deadline or forgetting."""
    done: dict[str, int] = state.get("done", {})
    for token in [k for k, v in done.items() if v + span <= ctx.watermark]:
        del done[token]
    for name in ("done", "open"):
        if name in state and not state[name]:
            del state[name]
    if done:
        set_deadline(state, min(done.values()) + span)


# ---- named quantities ---------------------------------------------------------------------


def provided(specs: Mapping[str, DetectorSpec], name: str) -> Any:
    """The policy-effective value of a quantity a detector ``provides`` (e.g.
    ``revocation_grace_ms``), read from ``specs`` (an engine's effective specs), else
    from the built-in defaults when that detector is not among them."""
    for spec in specs.values():
        if name in spec.provides:
            return spec.provides[name](spec.thresholds)
    for det in all_detectors():
        if name in det.spec.provides:
            return det.spec.provides[name](det.spec.thresholds)
    raise KeyError(f"no detector provides {name!r}")
