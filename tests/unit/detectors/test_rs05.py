"""RS-05 self-approval: approver is the requester's principal, the identity's owner or itself."""

from __future__ import annotations

from typing import Any

from pipeline.detectors.base import Context, Finding
from pipeline.detectors.rs05_self_approval import DETECTOR, SPEC
from tests.unit.detectors.factory import SECOND, T0, enriched


def ctx(watermark: int) -> Context:
    return Context(SPEC, dict(SPEC.thresholds), "appr-1", watermark)


def approve(approver: str, request: dict[str, Any] | None = None, **decided: Any) -> list[Finding]:
    """A request by agent-1 for alice (owner: dave) decided by ``approver``."""
    req = {"on_behalf_of": "alice@example.com", "identity": {"owner": "dave@example.com"}}
    events = [enriched("approval.requested", T0, **{**req, **(request or {})})]
    events.append(enriched("approval.decided", T0 + 60 * SECOND, approver=approver, **decided))
    return DETECTOR.on_events(ctx(T0 + 60 * SECOND), {}, events)


def test_fires_when_the_principal_approves_their_own_request() -> None:
    [finding] = approve("alice@example.com")
    assert finding.facts["approver_is"] == ["on_behalf_of"]
    assert finding.facts["requesting_identity"] == "agent-1"
    assert finding.context["approver"] == "alice@example.com"
    assert finding.context["on_behalf_of"] == "alice@example.com"


def test_fires_when_the_identity_owner_approves() -> None:
    [finding] = approve("dave@example.com")
    assert finding.facts["approver_is"] == ["identity_owner"]


def test_fires_when_the_agent_approves_itself() -> None:
    [finding] = approve("agent-1")
    assert finding.facts["approver_is"] == ["identity"]


def test_negative_an_independent_approver() -> None:
    assert approve("bob@example.com") == []


def test_edge_case_insensitive_match_but_no_near_miss() -> None:
    assert len(approve("Alice@Example.COM")) == 1
    assert approve("alice@example.co") == []


def test_a_denied_self_decision_grants_nothing() -> None:
    assert approve("alice@example.com", decision="denied") == []


def test_falls_back_to_the_decision_fields_without_a_request() -> None:
    decided = enriched("approval.decided", T0, approver="alice@example.com")
    [finding] = DETECTOR.on_events(ctx(T0), {}, [decided])
    assert finding.event_ids == [decided["event_id"]]


def test_waits_for_the_watermark_for_a_late_request() -> None:
    state: dict[str, Any] = {}
    decided = enriched(
        "approval.decided",
        T0 + SECOND,
        approver="dave@example.com",
        on_behalf_of=None,
        identity={"owner": None},
    )
    assert DETECTOR.on_events(ctx(T0), state, [decided]) == []
    request = enriched("approval.requested", T0, identity={"owner": "dave@example.com"})
    assert DETECTOR.on_events(ctx(T0), state, [request]) == []
    state.pop("_deadline")
    [finding] = DETECTOR.on_watermark(ctx(T0 + SECOND), state)
    assert finding.facts["approver_is"] == ["identity_owner"]
