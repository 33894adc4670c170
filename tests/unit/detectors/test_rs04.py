"""RS-04 approved without context: no approval.viewed by that approver before approving."""

from __future__ import annotations

from typing import Any

from pipeline.detectors.base import Context, Finding
from pipeline.detectors.rs04_approved_without_context import DETECTOR, SPEC
from tests.unit.detectors.factory import MINUTE, SECOND, T0, enriched


def ctx(watermark: int) -> Context:
    return Context(SPEC, dict(SPEC.thresholds), "appr-1", watermark)


def feed(events: list[Any], watermark: int, state: dict[str, Any] | None = None) -> list[Finding]:
    return DETECTOR.on_events(ctx(watermark), {} if state is None else state, events)


DECIDED_AT = T0 + 5 * MINUTE


def with_view(view_t: int | None, **view_fields: Any) -> list[Finding]:
    events = [enriched("approval.requested", T0)]
    if view_t is not None:
        events.append(enriched("approval.viewed", view_t, **view_fields))
    events.append(enriched("approval.decided", DECIDED_AT))
    return feed(events, watermark=DECIDED_AT + MINUTE)


def test_fires_when_never_viewed() -> None:
    [finding] = with_view(None)
    assert finding.subject == "appr-1"
    assert finding.facts["viewed_by_approver"] is False
    assert finding.facts["other_viewers"] == 0
    assert finding.context["approver"] == "bob@example.com"
    assert finding.time == DECIDED_AT


def test_negative_viewed_first() -> None:
    assert with_view(T0 + MINUTE) == []


def test_a_view_by_someone_else_does_not_count() -> None:
    [finding] = with_view(T0 + MINUTE, approver="carol@example.com")
    assert finding.facts["other_viewers"] == 1


def test_viewer_match_is_case_insensitive() -> None:
    assert with_view(T0 + MINUTE, approver="Bob@Example.com") == []


def test_edge_view_at_the_decision_counts_one_ms_after_does_not() -> None:
    assert with_view(DECIDED_AT) == []
    assert len(with_view(DECIDED_AT + 1)) == 1


def test_denials_are_not_judged() -> None:
    events = [enriched("approval.decided", DECIDED_AT, decision="denied")]
    assert feed(events, watermark=DECIDED_AT) == []


def test_a_view_delivered_after_the_decision_still_counts() -> None:
    state: dict[str, Any] = {}
    decided = enriched("approval.decided", DECIDED_AT)
    assert feed([decided], watermark=DECIDED_AT - 30 * SECOND, state=state) == []
    assert state["_deadline"] == DECIDED_AT
    late_view = enriched("approval.viewed", DECIDED_AT - 20 * SECOND)
    assert feed([late_view], watermark=DECIDED_AT - 10 * SECOND, state=state) == []
    state.pop("_deadline")
    assert DETECTOR.on_watermark(ctx(DECIDED_AT), state) == []


def test_absence_is_decided_on_the_watermark() -> None:
    state: dict[str, Any] = {}
    decided = enriched("approval.decided", DECIDED_AT)
    assert feed([decided], watermark=DECIDED_AT - 1, state=state) == []
    state.pop("_deadline")
    [finding] = DETECTOR.on_watermark(ctx(DECIDED_AT), state)
    assert finding.event_ids == [decided["event_id"]]
    assert state == {"done": DECIDED_AT}
