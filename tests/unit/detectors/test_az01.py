"""AZ-01 no policy decision recorded at request time."""

from __future__ import annotations

from typing import Any

from pipeline.detectors.az01_no_policy_decision import DETECTOR, SPEC
from pipeline.detectors.base import HOUR, Context, Finding
from tests.unit.detectors.factory import T0, enriched


def feed(events: list[Any], state: dict[str, Any] | None = None) -> list[Finding]:
    ctx = Context(SPEC, dict(SPEC.thresholds), "agent-1", T0)
    return DETECTOR.on_events(ctx, {} if state is None else state, events)


def test_fires_on_an_action_without_a_decision() -> None:
    event = enriched("action", T0, policy_decision=None, policy_id=None)
    [finding] = feed([event])
    assert finding.subject == "agent-1"
    assert finding.event_ids == [event["event_id"]]
    assert finding.facts["action"] == "crm.records.read"
    assert finding.context["identity_id"] == "agent-1"
    assert finding.window_start is None


def test_negative_allow_and_deny_are_both_decisions() -> None:
    assert feed([enriched("action", T0), enriched("action", T0, policy_decision="deny")]) == []


def test_edge_one_finding_per_action_per_hour() -> None:
    state: dict[str, Any] = {}
    first = enriched("action", T0, policy_decision=None)
    assert len(feed([first], state)) == 1
    assert len(feed([enriched("action", T0 + HOUR - 1, policy_decision=None)], state)) == 1
    other = enriched("action", T0 + HOUR - 1, policy_decision=None, action="crm.records.export")
    assert len(feed([other], state)) == 1
    assert len(feed([enriched("action", T0 + HOUR, policy_decision=None)], state)) == 1
