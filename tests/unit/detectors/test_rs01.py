"""RS-01 too-fast approval: review time from the request, or from the approver's first view."""

from __future__ import annotations

from typing import Any

from pipeline.detectors.base import Context, Finding
from pipeline.detectors.rs01_too_fast_approval import DETECTOR, SPEC
from tests.unit.detectors.factory import MINUTE, SECOND, T0, enriched


def ctx(watermark: int) -> Context:
    return Context(SPEC, dict(SPEC.thresholds), "appr-1", watermark)


def feed(
    events: list[dict[str, Any]], watermark: int, state: dict[str, Any] | None = None
) -> tuple[list[Finding], dict[str, Any]]:
    state = {} if state is None else state
    return DETECTOR.on_events(ctx(watermark), state, events), state


def decide(review_ms: int, risk: str = "medium", **fields: Any) -> list[Finding]:
    requested = enriched("approval.requested", T0, risk=risk)
    decided = enriched("approval.decided", T0 + review_ms, risk=risk, **fields)
    findings, _ = feed([requested, decided], watermark=T0 + review_ms)
    return findings


def test_fires_on_a_five_second_approval() -> None:
    [finding] = decide(5 * SECOND)
    assert finding.detector == "RS-01"
    assert finding.subject == "appr-1"
    assert finding.facts["review_seconds"] == 5.0
    assert finding.facts["min_review_seconds"] == 10
    assert finding.facts["review_started_by"] == "approval.requested"
    assert finding.context["approver"] == "bob@example.com"
    assert finding.context["approval_id"] == "appr-1"
    assert finding.context["on_behalf_of"] == "alice@example.com"
    assert finding.severity is None  # the spec's medium
    assert len(finding.event_ids) == 2


def test_edge_normal_risk_exactly_ten_seconds_is_enough() -> None:
    assert decide(10 * SECOND) == []
    assert len(decide(10 * SECOND - 1)) == 1


def test_edge_high_risk_needs_thirty_seconds() -> None:
    assert decide(30 * SECOND, risk="high") == []
    [finding] = decide(30 * SECOND - 1, risk="critical")
    assert finding.facts["min_review_seconds"] == 30
    assert finding.severity == "high"
    assert decide(15 * SECOND, risk="low") == []


def test_negative_a_considered_review() -> None:
    assert decide(3 * MINUTE, risk="critical") == []


def test_denials_are_not_judged() -> None:
    assert decide(1 * SECOND, decision="denied") == []


def test_review_starts_at_the_approvers_first_view() -> None:
    requested = enriched("approval.requested", T0)
    viewed = enriched("approval.viewed", T0 + 1 * MINUTE * 60)  # queued for an hour
    decided = enriched("approval.decided", viewed["event_time"] + 2 * SECOND)
    findings, _ = feed([requested, viewed, decided], watermark=decided["event_time"])
    [finding] = findings
    assert finding.facts["review_started_by"] == "approval.viewed"
    assert finding.facts["review_seconds"] == 2.0
    assert finding.event_ids == [requested["event_id"], viewed["event_id"], decided["event_id"]]


def test_another_persons_view_does_not_start_the_review() -> None:
    requested = enriched("approval.requested", T0)
    viewed = enriched("approval.viewed", T0 + 59 * SECOND, approver="carol@example.com")
    decided = enriched("approval.decided", T0 + 60 * SECOND)
    findings, _ = feed([requested, viewed, decided], watermark=decided["event_time"])
    assert findings == []


def test_waits_for_the_watermark_so_a_late_view_counts() -> None:
    requested = enriched("approval.requested", T0)
    decided = enriched("approval.decided", T0 + 60 * SECOND)
    findings, state = feed([requested, decided], watermark=T0 + 30 * SECOND)
    assert findings == []
    assert state["_deadline"] == decided["event_time"]
    # the view (logged 1 s before the decision) is delivered after it, within lateness
    late_view = enriched("approval.viewed", T0 + 59 * SECOND)
    findings, state = feed([late_view], watermark=T0 + 40 * SECOND, state=state)
    assert findings == []
    del state["_deadline"]  # the engine clears it before calling on_watermark
    [finding] = DETECTOR.on_watermark(ctx(decided["event_time"]), state)
    assert finding.facts["review_seconds"] == 1.0
    assert finding.time == decided["event_time"]


def test_judged_once_even_if_the_decision_is_redelivered() -> None:
    requested = enriched("approval.requested", T0)
    decided = enriched("approval.decided", T0 + 2 * SECOND)
    findings, state = feed([requested, decided], watermark=T0 + MINUTE)
    assert len(findings) == 1
    again, state = feed([decided], watermark=T0 + 2 * MINUTE, state=state)
    assert again == []
    assert "_deadline" not in state


def test_no_request_and_no_view_nothing_to_measure() -> None:
    decided = enriched("approval.decided", T0)
    findings, _ = feed([decided], watermark=T0)
    assert findings == []
