"""RS-02 bulk approvals: >= 10 decisions by one approver within 60 s, one finding per burst."""

from __future__ import annotations

from typing import Any

from pipeline.detectors.base import Context, Finding
from pipeline.detectors.rs02_bulk_approvals import DETECTOR, SPEC
from tests.unit.detectors.factory import MINUTE, SECOND, T0, enriched

APPROVER = "bob@example.com"


def ctx(watermark: int) -> Context:
    return Context(SPEC, dict(SPEC.thresholds), APPROVER, watermark)


def decisions(times: list[int], **fields: Any) -> list[dict[str, Any]]:
    return [
        enriched("approval.decided", t, approval_id=f"appr-{i}", **fields)
        for i, t in enumerate(times)
    ]


def feed(events: list[dict[str, Any]], watermark: int, state: dict[str, Any]) -> list[Finding]:
    return DETECTOR.on_events(ctx(watermark), state, events)


def tick(watermark: int, state: dict[str, Any]) -> list[Finding]:
    state.pop("_deadline", None)
    return DETECTOR.on_watermark(ctx(watermark), state)


def spread(n: int, span_ms: int) -> list[int]:
    """n decision times from T0 to T0 + span_ms inclusive."""
    return [T0 + span_ms * i // (n - 1) for i in range(n)]


def test_ten_decisions_in_under_a_minute_fire_once() -> None:
    state: dict[str, Any] = {}
    events = decisions(spread(10, 59 * SECOND))
    [finding] = feed(events, T0 + 2 * MINUTE, state)
    assert finding.subject == APPROVER
    assert finding.facts["decisions_in_window"] == 10
    assert finding.facts["approved_in_window"] == 10
    assert finding.window_start == T0
    assert finding.window_end == T0 + MINUTE
    assert finding.event_ids == [e["event_id"] for e in events]
    assert finding.context["approver"] == APPROVER
    assert tick(T0 + 10 * MINUTE, state) == []  # burst did not grow: no Update


def test_edge_exactly_sixty_seconds_apart_is_outside_the_window() -> None:
    assert feed(decisions(spread(10, 60 * SECOND)), T0 + 5 * MINUTE, {}) == []
    assert len(feed(decisions(spread(10, 60 * SECOND - 1)), T0 + 5 * MINUTE, {})) == 1


def test_edge_nine_decisions_do_not_fire() -> None:
    assert feed(decisions(spread(9, 10 * SECOND)), T0 + 5 * MINUTE, {}) == []


def test_negative_steady_pace() -> None:
    times = [T0 + i * 7 * SECOND for i in range(40)]  # ~8.6 per minute, all day long
    assert feed(decisions(times), T0 + 10 * MINUTE, {}) == []


def test_a_long_burst_is_one_finding_then_an_update_with_the_total() -> None:
    state: dict[str, Any] = {}
    times = [T0 + i * 2 * SECOND for i in range(25)]  # 25 decisions in 48 s
    [first] = feed(decisions(times), T0 + 50 * SECOND, state)
    assert first.facts["decisions_in_window"] == 10
    assert state["_deadline"] == T0 + MINUTE
    [update] = tick(T0 + MINUTE, state)
    assert update.window_start == first.window_start  # same alert id: an Update
    assert update.facts["decisions_in_window"] == 25
    assert tick(T0 + 5 * MINUTE, state) == []


def test_a_second_burst_later_is_a_second_finding() -> None:
    state: dict[str, Any] = {}
    times = spread(10, 20 * SECOND) + [T0 + 10 * MINUTE + i * SECOND for i in range(10)]
    findings = feed(decisions(times), T0 + 20 * MINUTE, state)
    assert [f.window_start for f in findings] == [T0, T0 + 10 * MINUTE]


def test_held_until_the_watermark_and_order_independent() -> None:
    events = decisions(spread(10, 30 * SECOND))
    state: dict[str, Any] = {}
    assert feed(events[5:], T0 - 1, state) == []  # arrive out of order, watermark behind
    assert feed(events[:5], T0 - 1, state) == []
    assert state["_deadline"] == T0  # the oldest still held
    [finding] = tick(T0 + MINUTE, state)
    assert finding.window_start == T0
    assert finding.event_ids == [e["event_id"] for e in events]


def test_a_redelivered_batch_is_not_counted_twice() -> None:
    state: dict[str, Any] = {}
    events = decisions(spread(6, 10 * SECOND))
    assert feed(events, T0 + 20 * SECOND, state) == []
    assert feed(events, T0 + 30 * SECOND, state) == []  # replayed after a restart
    assert feed(events[:3], T0 + 30 * SECOND, state) == []
