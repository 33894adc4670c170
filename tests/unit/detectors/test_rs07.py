"""RS-07 approval bombing: >= 5 denials then an approval for one requester within 10 min."""

from __future__ import annotations

from typing import Any

from pipeline.detectors.base import Context, Finding
from pipeline.detectors.rs07_approval_bombing import DETECTOR, SPEC
from tests.unit.detectors.factory import MINUTE, SECOND, T0, enriched

REQUESTER = "alice@example.com"


def ctx(watermark: int) -> Context:
    return Context(SPEC, dict(SPEC.thresholds), REQUESTER, watermark)


def decided(t: int, decision: str, n: int) -> dict[str, Any]:
    return enriched("approval.decided", t, decision=decision, approval_id=f"appr-{n}")


def bombing(denial_times: list[int], approved_at: int) -> list[dict[str, Any]]:
    events = [decided(t, "denied", i) for i, t in enumerate(denial_times)]
    return [*events, decided(approved_at, "approved", len(events))]


def feed(events: list[Any], state: dict[str, Any] | None = None) -> list[Finding]:
    watermark = max(e["event_time"] for e in events)
    return DETECTOR.on_events(ctx(watermark), {} if state is None else state, events)


def test_fires_on_five_denials_then_an_approval() -> None:
    events = bombing([T0 + i * MINUTE for i in range(5)], approved_at=T0 + 6 * MINUTE)
    [finding] = feed(events)
    assert finding.subject == REQUESTER
    assert finding.facts["denials"] == 5
    assert finding.facts["approved_approval_id"] == "appr-5"
    assert finding.facts["seconds_first_denial_to_approval"] == 360.0
    assert finding.window_start == T0
    assert finding.window_end == T0 + 6 * MINUTE
    assert finding.event_ids == [e["event_id"] for e in events]
    assert finding.context["on_behalf_of"] == REQUESTER
    assert finding.context["approval_id"] == "appr-5"


def test_edge_four_denials_do_not_fire() -> None:
    assert feed(bombing([T0 + i * MINUTE for i in range(4)], T0 + 5 * MINUTE)) == []


def test_edge_first_denial_exactly_ten_minutes_before_is_outside() -> None:
    denials = [T0, *(T0 + i * MINUTE for i in range(1, 5))]
    assert feed(bombing(denials, approved_at=T0 + 10 * MINUTE)) == []
    assert len(feed(bombing(denials, approved_at=T0 + 10 * MINUTE - 1))) == 1


def test_negative_denials_without_an_approval() -> None:
    assert feed([decided(T0 + i * SECOND, "denied", i) for i in range(8)]) == []


def test_denials_are_spent_by_the_finding() -> None:
    state: dict[str, Any] = {}
    events = bombing([T0 + i * SECOND for i in range(5)], approved_at=T0 + 10 * SECOND)
    assert len(feed(events, state)) == 1
    assert feed([decided(T0 + 20 * SECOND, "approved", 99)], state) == []


def test_held_until_the_watermark() -> None:
    state: dict[str, Any] = {}
    events = bombing([T0 + i * SECOND for i in range(5)], approved_at=T0 + 10 * SECOND)
    assert DETECTOR.on_events(ctx(T0 - 1), state, events[::-1]) == []
    state.pop("_deadline")
    assert len(DETECTOR.on_watermark(ctx(T0 + MINUTE), state)) == 1
