"""RS-06 action ahead of approval: before the decision, under a denial, or an unknown approval."""

from __future__ import annotations

from typing import Any

from pipeline.detectors.base import Context, Finding
from pipeline.detectors.rs06_action_ahead_of_approval import DETECTOR, SPEC
from tests.unit.detectors.factory import MINUTE, SECOND, T0, enriched

GRACE = 10 * MINUTE


def ctx(watermark: int) -> Context:
    return Context(SPEC, dict(SPEC.thresholds), "appr-1", watermark)


def feed(events: list[Any], watermark: int, state: dict[str, Any] | None = None) -> list[Finding]:
    return DETECTOR.on_events(ctx(watermark), {} if state is None else state, events)


def tick(watermark: int, state: dict[str, Any]) -> list[Finding]:
    state.pop("_deadline", None)
    return DETECTOR.on_watermark(ctx(watermark), state)


def action(t: int, **fields: Any) -> dict[str, Any]:
    return enriched("action", t, approval_id="appr-1", **fields)


def test_fires_when_the_action_ran_before_the_decision() -> None:
    act = action(T0 + 10 * SECOND)
    events = [
        enriched("approval.requested", T0),
        act,
        enriched("approval.decided", T0 + 70 * SECOND),
    ]
    [finding] = feed(events, watermark=T0 + 2 * MINUTE)
    assert finding.facts["reason"] == "before_decision"
    assert finding.facts["seconds_ahead"] == 60.0
    assert finding.event_ids[0] == act["event_id"]
    assert finding.context["approval_id"] == "appr-1"
    assert finding.context["identity_id"] == "agent-1"
    assert finding.context["approver"] == "bob@example.com"


def test_negative_action_after_the_approval() -> None:
    events = [
        enriched("approval.requested", T0),
        enriched("approval.decided", T0 + MINUTE),
        action(T0 + 2 * MINUTE),
    ]
    assert feed(events, watermark=T0 + 30 * MINUTE) == []


def test_edge_same_millisecond_is_after_one_ms_earlier_is_ahead() -> None:
    decided = T0 + MINUTE
    ok = [enriched("approval.decided", decided), action(decided)]
    assert feed(ok, watermark=decided + GRACE) == []
    early = [enriched("approval.decided", decided), action(decided - 1)]
    [finding] = feed(early, watermark=decided + GRACE)
    assert finding.facts["reason"] == "before_decision"


def test_fires_under_a_denied_approval_once_per_approval() -> None:
    events = [
        enriched("approval.requested", T0),
        enriched("approval.decided", T0 + MINUTE, decision="denied"),
        action(T0 + 2 * MINUTE),
        action(T0 + 3 * MINUTE),
    ]
    state: dict[str, Any] = {}
    [finding] = feed(events, watermark=T0 + 5 * MINUTE, state=state)
    assert finding.facts["reason"] == "denied"
    assert finding.facts["decision"] == "denied"
    assert state["violations"] == 2


def test_unknown_approval_fires_after_the_grace_exactly() -> None:
    state: dict[str, Any] = {}
    act = action(T0)
    assert feed([act], watermark=T0, state=state) == []
    assert state["_deadline"] == T0 + GRACE
    assert tick(T0 + GRACE - 1, state) == []
    [finding] = tick(T0 + GRACE, state)
    assert finding.facts["reason"] == "unknown"
    assert finding.event_ids == [act["event_id"]]
    assert tick(T0 + 2 * GRACE, state) == []


def test_a_request_logged_within_the_grace_makes_it_ahead_not_unknown() -> None:
    state: dict[str, Any] = {}
    assert feed([action(T0)], watermark=T0, state=state) == []
    [finding] = feed([enriched("approval.requested", T0 + MINUTE)], T0 + 2 * MINUTE, state)
    assert finding.facts["reason"] == "before_decision"


def test_judged_only_when_the_watermark_passes_the_action() -> None:
    state: dict[str, Any] = {}
    events = [enriched("approval.requested", T0), action(T0 + MINUTE)]
    assert feed(events, watermark=T0 + MINUTE - 1, state=state) == []
    assert state["_deadline"] == T0 + MINUTE
    # the decision (1 s before the action) is delivered late but within lateness
    assert feed([enriched("approval.decided", T0 + 59 * SECOND)], T0 + 30 * SECOND, state) == []
    assert tick(T0 + MINUTE, state) == []


def test_failed_actions_did_not_run() -> None:
    events = [
        enriched("approval.decided", T0, decision="denied"),
        action(T0 + 1, outcome="failure"),
    ]
    assert feed(events, watermark=T0 + GRACE) == []
