"""AT-02 broken delegation chain: actions must trace back to a task started for a human."""

from __future__ import annotations

from typing import Any

from pipeline.detectors.at02_broken_delegation_chain import DETECTOR, SPEC
from pipeline.detectors.base import Context, Finding
from tests.unit.detectors.factory import MINUTE, SECOND, T0, enriched

GRACE = 5 * MINUTE


def ctx(watermark: int) -> Context:
    return Context(SPEC, dict(SPEC.thresholds), "task-1", watermark)


def feed(events: list[Any], watermark: int, state: dict[str, Any] | None = None) -> list[Finding]:
    return DETECTOR.on_events(ctx(watermark), {} if state is None else state, events)


def tick(watermark: int, state: dict[str, Any]) -> list[Finding]:
    state.pop("_deadline", None)
    return DETECTOR.on_watermark(ctx(watermark), state)


def test_negative_an_intact_chain() -> None:
    started = enriched("task.started", T0)
    delegation = enriched("delegation", T0 + SECOND, parent_event_id=started["event_id"])
    act = enriched(
        "action", T0 + 2 * SECOND, identity_id="agent-2", parent_event_id=delegation["event_id"]
    )
    assert feed([started, delegation, act], watermark=T0 + GRACE * 2) == []


def test_fires_after_the_grace_when_the_task_never_started() -> None:
    state: dict[str, Any] = {}
    act = enriched("action", T0)
    assert feed([act], watermark=T0, state=state) == []
    assert state["_deadline"] == T0 + GRACE
    assert tick(T0 + GRACE - 1, state) == []
    [finding] = tick(T0 + GRACE, state)
    assert finding.subject == "task-1"
    assert finding.facts["reasons"] == ["no_task_start"]
    assert finding.event_ids == [act["event_id"]]
    assert finding.context["task_id"] == "task-1"


def test_a_start_logged_late_within_the_grace_links_up() -> None:
    state: dict[str, Any] = {}
    assert feed([enriched("action", T0)], watermark=T0, state=state) == []
    assert feed([enriched("task.started", T0 + 30 * SECOND)], T0 + MINUTE, state) == []
    assert tick(T0 + GRACE, state) == []


def test_fires_when_the_task_started_for_nobody() -> None:
    events = [enriched("task.started", T0, on_behalf_of=None), enriched("action", T0 + 1)]
    [finding] = feed(events, watermark=T0 + GRACE + 1)
    assert finding.facts["reasons"] == ["no_human_principal"]


def test_fires_when_the_principal_changes_mid_task() -> None:
    events = [
        enriched("task.started", T0),
        enriched("action", T0 + 1, on_behalf_of="mallory@example.com"),
    ]
    [finding] = feed(events, watermark=T0 + GRACE + 1)
    assert finding.facts["reasons"] == ["principal_changed"]
    assert finding.facts["event_on_behalf_of"] == "mallory@example.com"
    assert finding.context["on_behalf_of"] == "alice@example.com"


def test_fires_on_a_parent_never_seen_in_the_task() -> None:
    events = [enriched("task.started", T0), enriched("action", T0 + 1, parent_event_id="ev-x")]
    [finding] = feed(events, watermark=T0 + GRACE + 1)
    assert finding.facts["reasons"] == ["unknown_parent"]
    assert finding.facts["parent_event_id"] == "ev-x"


def test_one_finding_per_task_and_reason() -> None:
    state: dict[str, Any] = {}
    events = [enriched("action", T0 + i * SECOND) for i in range(5)]
    [finding] = feed(events, watermark=T0 + GRACE + MINUTE, state=state)
    assert finding.facts["broken_events"] == 1
    assert state["broken_events"] == 5
    assert "_deadline" not in state
