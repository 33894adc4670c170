"""AZ-02 denied but executed: policy decision deny, outcome success."""

from __future__ import annotations

from typing import Any

from pipeline.detectors.az02_denied_but_executed import DETECTOR, SPEC
from pipeline.detectors.base import HOUR, Context, Finding
from tests.unit.detectors.factory import T0, enriched


def feed(events: list[Any], state: dict[str, Any] | None = None) -> list[Finding]:
    ctx = Context(SPEC, dict(SPEC.thresholds), "agent-1", T0)
    return DETECTOR.on_events(ctx, {} if state is None else state, events)


def denied(t: int = T0, **fields: Any) -> dict[str, Any]:
    return enriched("action", t, policy_decision="deny", policy_id="pol-1", **fields)


def test_fires_when_a_denied_action_succeeds() -> None:
    event = denied()
    [finding] = feed([event])
    assert finding.event_ids == [event["event_id"]]
    assert finding.facts["policy_id"] == "pol-1"
    assert finding.facts["outcome"] == "success"
    assert finding.severity is None  # the spec's high


def test_negative_denied_and_blocked_or_allowed() -> None:
    assert feed([denied(outcome="failure"), denied(outcome="error"), enriched("action", T0)]) == []


def test_critical_sensitivity_raises_severity() -> None:
    [finding] = feed([denied(sensitivity="critical")])
    assert finding.severity == "critical"


def test_edge_repeat_within_the_hour_is_quiet_a_new_resource_is_not() -> None:
    state: dict[str, Any] = {}
    assert len(feed([denied()], state)) == 1
    assert len(feed([denied(T0 + HOUR - 1)], state)) == 1  # reported: an Update
    assert len(feed([denied(T0 + HOUR - 1, resource="crm://accounts/43")], state)) == 1
    assert len(feed([denied(T0 + HOUR)], state)) == 1
