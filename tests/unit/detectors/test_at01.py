"""AT-01 unattributable action: no identity, or one unknown to the registry."""

from __future__ import annotations

from typing import Any

from pipeline.detectors.at01_unattributable_action import DETECTOR, SPEC, UNATTRIBUTED
from pipeline.detectors.base import HOUR, Context, Finding
from tests.unit.detectors.factory import T0, enriched, incidents


def feed(events: list[Any], subject: str = "agent-1", state: Any = None) -> list[Finding]:
    ctx = Context(SPEC, dict(SPEC.thresholds), subject, T0)
    return DETECTOR.on_events(ctx, {} if state is None else state, events)


def test_fires_on_an_identity_unknown_to_the_registry() -> None:
    event = enriched("action", T0, identity={"known": False, "kind": None, "owner": None})
    [finding] = feed([event])
    assert finding.subject == "agent-1"
    assert finding.facts["reason"] == "unknown_identity"
    assert finding.event_ids == [event["event_id"]]


def test_fires_on_an_action_with_no_identity() -> None:
    event = enriched("action", T0, identity_id=None)
    [finding] = feed([event], subject="")
    assert finding.subject == UNATTRIBUTED
    assert finding.facts["reason"] == "no_identity"
    assert finding.context["platform"] == "crm-agents"
    assert "identity_id" not in finding.context


def test_negative_known_identity_or_not_enriched() -> None:
    assert feed([enriched("action", T0)]) == []
    assert feed([enriched("action", T0, identity=None)]) == []  # no lookup: no evidence


def test_edge_every_occurrence_reported_one_incident_per_hour() -> None:
    state: dict[str, Any] = {}
    unknown = {"known": False}
    found = feed([enriched("action", T0, identity=unknown)], state=state)
    found += feed([enriched("action", T0 + HOUR - 1, identity=unknown)], state=state)
    found += feed([enriched("action", T0 + HOUR, identity=unknown)], state=state)
    assert len(found) == 3  # no occurrence is dropped
    assert incidents(found) == [1, 2, 1]  # a Create, its Update, a new period
