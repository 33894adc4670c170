"""RS-03 always-yes approver: >= 95% approved over >= 50 decisions within 24 h."""

from __future__ import annotations

from typing import Any

from pipeline.detectors.base import DAY, HOUR, Context, Finding
from pipeline.detectors.rs03_always_yes_approver import DETECTOR, SPEC
from tests.unit.detectors.factory import MINUTE, T0, enriched

APPROVER = "bob@example.com"


def ctx(watermark: int) -> Context:
    return Context(SPEC, dict(SPEC.thresholds), APPROVER, watermark)


def decisions(total: int, denied: int, start: int = T0, step: int = 10 * MINUTE) -> list[Any]:
    """``total`` decisions ``step`` apart; the first ``denied`` of them are denials."""
    return [
        enriched(
            "approval.decided",
            start + i * step,
            approval_id=f"appr-{start}-{i}",
            decision="denied" if i < denied else "approved",
        )
        for i in range(total)
    ]


def feed(events: list[Any], state: dict[str, Any] | None = None) -> list[Finding]:
    watermark = max(e["event_time"] for e in events)
    return DETECTOR.on_events(ctx(watermark), {} if state is None else state, events)


def test_fires_on_49_of_50_approved() -> None:
    events = decisions(50, denied=1)
    [finding] = feed(events)
    assert finding.subject == APPROVER
    assert finding.facts["decisions_in_window"] == 50
    assert finding.facts["approved_in_window"] == 49
    assert finding.facts["approval_rate"] == 0.98
    assert finding.window_start == T0
    assert finding.window_end == T0 + DAY
    assert finding.time == events[-1]["event_time"]
    assert finding.event_ids == [e["event_id"] for e in events[-20:]]


def test_edge_exactly_95_percent_fires_one_more_denial_does_not() -> None:
    assert len(feed(decisions(60, denied=3))) == 1  # 57/60 = 0.95
    assert feed(decisions(60, denied=4)) == []  # 56/60 = 0.933


def test_edge_49_decisions_are_not_enough() -> None:
    assert feed(decisions(49, denied=0)) == []
    assert len(feed(decisions(50, denied=0))) == 1


def test_negative_a_discerning_approver() -> None:
    assert feed(decisions(100, denied=20, step=5 * MINUTE)) == []


def test_decisions_older_than_the_window_drop_out() -> None:
    events = decisions(50, denied=0, step=30 * MINUTE)  # 50 decisions over 24.5 h
    assert feed(events) == []


def test_one_finding_per_window_then_a_fresh_window() -> None:
    state: dict[str, Any] = {}
    day_one = decisions(120, denied=0, step=5 * MINUTE)  # 10 h of yes
    assert len(feed(day_one, state)) == 1  # decisions 51..120 fall in the reported window
    day_two = decisions(50, denied=0, start=T0 + DAY + HOUR, step=MINUTE)
    [second] = feed(day_two, state)
    assert second.window_start == T0 + DAY + HOUR


def test_held_until_the_watermark() -> None:
    state: dict[str, Any] = {}
    events = decisions(50, denied=0)
    assert DETECTOR.on_events(ctx(T0 - 1), state, events) == []
    assert state["_deadline"] == T0
    state.pop("_deadline")
    assert len(DETECTOR.on_watermark(ctx(events[-1]["event_time"]), state)) == 1
