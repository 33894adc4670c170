"""The generic drivers of kinds.py: each window kind's positive, negative and edge cases
(half-open windows, replays, absence met exactly at its deadline, late events)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from pipeline.detectors.base import Context, DetectorSpec, Event
from pipeline.detectors.engine import DetectionEngine
from pipeline.detectors.kinds import (
    UNATTRIBUTED,
    Facts,
    Missed,
    Record,
    Window,
    absence,
    count_then,
    event_count,
    event_ratio,
    provided,
    single_event,
    value_count,
)
from pipeline.detectors.policy import parse_policy
from tests.unit.detectors.factory import MINUTE, SECOND, T0, enriched, run


def spec(**changes: Any) -> DetectorSpec:
    base = DetectorSpec(
        id="TEST-01",
        title="test",
        description="a test rule",
        severity="medium",
        subject="approver",
        event_types=frozenset({"approval.decided"}),
        window_ms=MINUTE,
        thresholds={"n": 3, "window_s": 60},
        frameworks=(),
        remediation="none",
    )
    return dataclasses.replace(base, **changes)


def decided(t: int, decision: str = "approved", **fields: Any) -> dict[str, Any]:
    return enriched("approval.decided", t, decision=decision, **fields)


def window_facts(window: Window, ctx: Context) -> Facts:
    return {"count": window.count, "hits": window.hits, "start": window.start, "end": window.end}


def approved(record: Record) -> bool:
    return bool(record["decision"] == "approved")


# ---- single_event -----------------------------------------------------------------------


ACTION = spec(subject="identity", event_types=frozenset({"action"}), window_ms=None)


def denied(event: Event) -> bool:
    return event.get("policy_decision") == "deny"


def action_facts(event: Event) -> Facts:
    return {"action": event.get("action")}


def test_single_event_match_and_facts() -> None:
    det = single_event(ACTION, denied, action_facts)
    hit, miss = enriched("action", T0, policy_decision="deny"), enriched("action", T0 + 1)
    [finding] = run(det, [hit, miss])
    assert finding.subject == "agent-1"
    assert finding.event_ids == [hit["event_id"]]
    assert finding.facts == {"action": "crm.records.read"}
    assert finding.time == T0
    assert finding.context["identity_id"] == "agent-1" and finding.context["team"] == "sales"
    assert finding.severity is None  # the spec's


def test_single_event_negative() -> None:
    assert run(single_event(ACTION, denied, action_facts), [enriched("action", T0)]) == []


def test_single_event_judge_reads_thresholds_and_severity_hook() -> None:
    def judge(event: Event, ctx: Context) -> Facts | None:
        latency = int(event["latency_ms"])
        return {"latency_ms": latency} if latency >= ctx.thresholds["max_ms"] else None

    rule = dataclasses.replace(ACTION, thresholds={"max_ms": 100})
    det = single_event(
        rule, judge=judge, severity=lambda e: "high" if e["latency_ms"] > 500 else None
    )
    slow, edge, fast = (
        enriched("action", T0 + i, latency_ms=ms) for i, ms in enumerate((900, 100, 99))
    )
    found = run(det, [slow, edge, fast])
    assert [f.facts["latency_ms"] for f in found] == [900, 100]  # the threshold itself fires
    assert [f.severity for f in found] == ["high", None]
    assert run(det, [edge], thresholds={"max_ms": 101}) == []  # a policy override is read


def test_single_event_without_a_subject_is_unattributed() -> None:
    det = single_event(ACTION, denied, action_facts)
    ctx = Context(ACTION, ACTION.thresholds, "", T0)
    [finding] = det.on_events(
        ctx, {}, [enriched("action", T0, identity_id=None, policy_decision="deny")]
    )
    assert finding.subject == UNATTRIBUTED


def test_single_event_takes_match_and_facts_or_judge() -> None:
    with pytest.raises(TypeError):
        single_event(ACTION, denied)
    with pytest.raises(TypeError):
        single_event(ACTION, denied, action_facts, judge=lambda e, c: {})


# ---- event_count ------------------------------------------------------------------------

COUNT = event_count(
    spec(),
    fields=("decision", "approval_id", "platform"),
    threshold="n",
    hit=approved,
    facts=window_facts,
)


def test_event_count_fires_once_per_burst_when_the_watermark_passes() -> None:
    events = [decided(T0 + i * SECOND, approval_id=f"a{i}") for i in range(3)]
    assert run(COUNT, events, watermark=T0) == []  # held: the watermark has not passed them
    [finding] = run(COUNT, events, watermark=T0 + 2 * SECOND)
    assert finding.facts == {"count": 3, "hits": 3, "start": T0, "end": T0 + MINUTE}
    assert (finding.window_start, finding.window_end, finding.time) == (
        T0,
        T0 + MINUTE,
        T0 + 2 * SECOND,
    )
    assert finding.event_ids == [e["event_id"] for e in events]
    assert finding.approval_ids == ["a0", "a1", "a2"]
    assert finding.context == {"approver": "bob@example.com", "platform": "crm-agents"}


def test_event_count_negative_below_the_threshold() -> None:
    assert run(COUNT, [decided(T0), decided(T0 + SECOND)], watermark=T0 + MINUTE) == []


def test_event_count_window_is_half_open() -> None:
    at_edge = [decided(T0), decided(T0 + 30 * SECOND), decided(T0 + MINUTE)]
    assert run(COUNT, at_edge, watermark=T0 + 2 * MINUTE) == []
    inside = [decided(T0), decided(T0 + 30 * SECOND), decided(T0 + MINUTE - 1)]
    assert len(run(COUNT, inside, watermark=T0 + 2 * MINUTE)) == 1


def test_event_count_replayed_event_is_not_counted_twice() -> None:
    first, second = decided(T0), decided(T0 + SECOND)
    states: dict[str, Any] = {}
    assert run(COUNT, [first, second], watermark=T0 - 1, states=states) == []
    assert run(COUNT, [first, second, first], watermark=T0 + MINUTE, states=states) == []


def test_event_count_burst_update_with_the_final_count() -> None:
    states: dict[str, Any] = {}
    burst = [decided(T0 + i * SECOND, "denied" if i == 4 else "approved") for i in range(5)]
    [created] = run(COUNT, burst[:3], watermark=T0 + 2 * SECOND, states=states)
    assert created.facts["count"] == 3
    assert run(COUNT, burst[3:], watermark=T0 + 10 * SECOND, states=states) == []  # joins
    [update] = run(COUNT, [], watermark=T0 + MINUTE, states=states)  # the burst closes
    assert update.facts == {"count": 5, "hits": 4, "start": T0, "end": T0 + MINUTE}
    assert update.window_start == created.window_start  # same alert id: an Update
    assert run(COUNT, [], watermark=T0 + 2 * MINUTE, states=states) == []


def test_event_count_watermark_late_event_is_skipped() -> None:
    states: dict[str, Any] = {}
    assert (
        run(COUNT, [decided(T0), decided(T0 + SECOND)], watermark=T0 + 10 * SECOND, states=states)
        == []
    )
    late = decided(T0 + 5 * SECOND)  # behind the released watermark
    assert run(COUNT, [late], watermark=T0 + 20 * SECOND, states=states) == []


# ---- event_ratio ------------------------------------------------------------------------

RATIO = event_ratio(
    spec(thresholds={"n": 4, "ratio": 0.75, "window_s": 60}),
    fields=("decision", "approval_id"),
    hit=approved,
    min_count="n",
    min_ratio="ratio",
    facts=window_facts,
)


def test_event_ratio_fires_at_the_ratio() -> None:
    events = [
        decided(T0 + i * SECOND, "denied" if i == 0 else "approved", approval_id=f"a{i}")
        for i in range(4)
    ]
    [finding] = run(RATIO, events, watermark=T0 + MINUTE)
    assert finding.facts == {"count": 4, "hits": 3, "start": T0, "end": T0 + MINUTE}
    assert finding.approval_ids == ["a0", "a1", "a2", "a3"]


def test_event_ratio_negative_under_the_ratio_or_the_count() -> None:
    two_denied = [decided(T0 + i * SECOND, "denied" if i < 2 else "approved") for i in range(4)]
    assert run(RATIO, two_denied, watermark=T0 + MINUTE) == []
    too_few = [decided(T0 + i * SECOND) for i in range(3)]
    assert run(RATIO, too_few, watermark=T0 + MINUTE) == []


def test_event_ratio_window_half_open_and_reported_window_skipped() -> None:
    edge = [decided(T0), *(decided(T0 + MINUTE + i * SECOND) for i in range(3))]
    assert run(RATIO, edge, watermark=T0 + 2 * MINUTE) == []  # the first left at +60 s
    states: dict[str, Any] = {}
    burst = [decided(T0 + i * SECOND) for i in range(8)]
    assert len(run(RATIO, burst, watermark=T0 + MINUTE, states=states)) == 1  # not twice


# ---- count_then -------------------------------------------------------------------------

THEN = count_then(
    spec(),
    fields=("decision", "approval_id"),
    counted=lambda r: r["decision"] == "denied",
    trigger=approved,
    threshold="n",
    facts=window_facts,
)


def test_count_then_fires_on_the_trigger_after_enough_counted() -> None:
    denials = [decided(T0 + i * SECOND, "denied", approval_id=f"d{i}") for i in range(3)]
    trigger = decided(T0 + 10 * SECOND, approval_id="ok")
    [finding] = run(THEN, [*denials, trigger], watermark=T0 + MINUTE)
    assert finding.facts == {"count": 3, "hits": 3, "start": T0, "end": T0 + 10 * SECOND}
    assert finding.event_ids == [e["event_id"] for e in (*denials, trigger)]
    assert finding.approval_ids == ["d0", "d1", "d2", "ok"]


def test_count_then_negative_and_edges() -> None:
    two = [decided(T0, "denied"), decided(T0 + SECOND, "denied"), decided(T0 + 2 * SECOND)]
    assert run(THEN, two, watermark=T0 + MINUTE) == []
    no_trigger = [decided(T0 + i * SECOND, "denied") for i in range(5)]
    assert run(THEN, no_trigger, watermark=T0 + MINUTE) == []
    first_at_edge = [
        decided(T0, "denied"),
        decided(T0 + 1, "denied"),
        decided(T0 + 2, "denied"),
        decided(T0 + MINUTE + 1),
    ]
    assert run(THEN, first_at_edge, watermark=T0 + 2 * MINUTE) == []  # two left the window


def test_count_then_spends_the_counted_events() -> None:
    events = [
        *(decided(T0 + i * SECOND, "denied") for i in range(3)),
        decided(T0 + 5 * SECOND),
        decided(T0 + 6 * SECOND),
    ]
    assert len(run(THEN, events, watermark=T0 + MINUTE)) == 1


# ---- value_count ------------------------------------------------------------------------

REUSE = value_count(
    spec(
        subject="credential",
        event_types=frozenset({"action"}),
        window_ms=MINUTE,
        thresholds={"n": 2, "window_s": 60},
    ),
    values={"identity_id": "n"},
    facts=lambda seen, ctx: {"identities": sorted(seen["identity_id"])},
)


def test_value_count_fires_on_distinct_values() -> None:
    a, b = (
        enriched("action", T0, identity_id="agent-1"),
        enriched("action", T0 + SECOND, identity_id="agent-2"),
    )
    [finding] = run(REUSE, [a, b])
    assert finding.facts == {"identities": ["agent-1", "agent-2"]}
    assert finding.event_ids == sorted([a["event_id"], b["event_id"]])
    assert (finding.window_start, finding.window_end) == (T0, T0 + SECOND)
    assert finding.context["credential_id"] == "cred-1"


def test_value_count_negative_same_value_and_replay() -> None:
    a = enriched("action", T0)
    assert run(REUSE, [a, enriched("action", T0 + SECOND), a]) == []


def test_value_count_window_half_open_and_episode_update() -> None:
    edge = [
        enriched("action", T0, identity_id="agent-1"),
        enriched("action", T0 + MINUTE, identity_id="agent-2"),
    ]
    assert run(REUSE, edge) == []
    three = [enriched("action", T0 + i * SECOND, identity_id=f"agent-{i}") for i in range(3)]
    first, grown = run(REUSE, three)
    assert first.window_start == grown.window_start == T0  # one episode, updated
    assert (
        run(REUSE, [*three, enriched("action", T0 + 3 * SECOND, identity_id="agent-0")])[2:] == []
    )


# ---- absence ----------------------------------------------------------------------------

TASK = spec(
    subject="task",
    event_types=frozenset({"task.completed", "credential.revoked"}),
    window_ms=MINUTE,
    thresholds={"grace_s": 60},
)


def missed_facts(missed: Missed, ctx: Context) -> Facts:
    return {"token": missed.token, "started": missed.started, "deadline": missed.deadline}


NOT_REVOKED = absence(
    TASK,
    start=lambda e: e["event_type"] == "task.completed",
    end=lambda e: e["event_type"] == "credential.revoked",
    within="grace_s",
    facts=missed_facts,
)


def test_absence_fires_when_the_watermark_passes_the_deadline() -> None:
    done = enriched("task.completed", T0)
    states: dict[str, Any] = {}
    assert run(NOT_REVOKED, [done], watermark=T0 + MINUTE - 1, states=states) == []
    [finding] = run(NOT_REVOKED, [], watermark=T0 + MINUTE, states=states)
    assert finding.facts == {"token": "", "started": T0, "deadline": T0 + MINUTE}
    assert finding.event_ids == [done["event_id"]]
    assert (finding.window_start, finding.window_end, finding.time) == (
        T0,
        T0 + MINUTE,
        T0 + MINUTE,
    )
    assert finding.context["task_id"] == "task-1"


def test_absence_satisfied_exactly_at_the_deadline() -> None:
    events = [enriched("task.completed", T0), enriched("credential.revoked", T0 + MINUTE)]
    assert run(NOT_REVOKED, events, watermark=T0 + 2 * MINUTE) == []


def test_absence_b_after_the_deadline_or_before_a_does_not_count() -> None:
    late_b = [enriched("task.completed", T0), enriched("credential.revoked", T0 + MINUTE + 1)]
    assert len(run(NOT_REVOKED, late_b, watermark=T0 + 2 * MINUTE)) == 1
    b_first = [enriched("credential.revoked", T0 - 1), enriched("task.completed", T0)]
    assert len(run(NOT_REVOKED, b_first, watermark=T0 + 2 * MINUTE)) == 1


def test_absence_replayed_a_is_judged_once_and_state_empties() -> None:
    done = enriched("task.completed", T0)
    states: dict[str, Any] = {}
    assert len(run(NOT_REVOKED, [done], watermark=T0 + MINUTE, states=states)) == 1
    assert run(NOT_REVOKED, [done], watermark=T0 + MINUTE + 1, states=states) == []  # replay
    run(NOT_REVOKED, [], watermark=T0 + 3 * MINUTE, states=states)
    assert states["task-1"] == {}  # forgotten a timespan later: the engine drops it


def test_absence_watermark_late_a_is_judged_at_once() -> None:
    states: dict[str, Any] = {}
    run(NOT_REVOKED, [], watermark=T0 + 5 * MINUTE, states=states)
    assert (
        len(
            run(
                NOT_REVOKED,
                [enriched("task.completed", T0)],
                watermark=T0 + 5 * MINUTE,
                states=states,
            )
        )
        == 1
    )


def test_absence_keys_separate_expectations() -> None:
    per_cred = absence(
        TASK,
        start=lambda e: e["event_type"] == "task.completed",
        end=lambda e: e["event_type"] == "credential.revoked",
        key=lambda e: "c" if e["event_type"] != "credential.revoked" else str(e["credential_id"]),
        within="grace_s",
        facts=missed_facts,
    )
    events = [
        enriched("task.completed", T0),
        enriched("credential.revoked", T0 + 1, credential_id="other"),
    ]
    assert len(run(per_cred, events, watermark=T0 + 2 * MINUTE)) == 1


# ---- provided ---------------------------------------------------------------------------


def test_provided_reads_the_policy_effective_value() -> None:
    default = DetectionEngine()
    assert provided(default.specs, "revocation_grace_ms") == 300_000
    assert provided(default.specs, "credential_max_lifetime_ms")["ai_agent"] == 3_600_000
    policy = parse_policy(
        "version: 1\ndetectors:\n  SP-02: {thresholds: {grace_s: 60}}\n"
        "  SP-01: {thresholds: {max_lifetime_ai_agent_s: 600}}\n"
    )
    tuned = DetectionEngine(policy)
    assert provided(tuned.specs, "revocation_grace_ms") == 60_000
    assert provided(tuned.specs, "credential_max_lifetime_ms")["ai_agent"] == 600_000
    assert provided({}, "revocation_grace_ms") == 300_000  # the built-in default
    with pytest.raises(KeyError):
        provided(default.specs, "no_such_quantity")


def test_effects_are_declared_on_the_specs() -> None:
    specs = DetectionEngine().specs
    discrediting = sorted(i for i, s in specs.items() if "discredits_approvals" in s.effects)
    assert discrediting == [f"RS-0{n}" for n in range(1, 8)]
    assert all("marks_task_unsafe" in s.effects for s in specs.values())
