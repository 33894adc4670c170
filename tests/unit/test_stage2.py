"""Stage 2 without Kafka: a dict stands in for the faust Table's key/value interface."""

from __future__ import annotations

from typing import Any

from pipeline.detectors.engine import DetectionEngine
from pipeline.flow.route import route
from pipeline.flow.stage2 import PARTITION_KEY, Stage2
from tests.unit.detectors.factory import enriched

LATENESS = 60_000
T0 = 1_764_000_000_000


class Store(dict[str, Any]):
    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key, default)


def feed(stage: Stage2, store: Store, events: list[dict], offset: int, partitions: int = 1):
    engine = stage.engine
    routed = route(events, partitions, engine.subject_kinds_for)
    wm = max(e["event_time"] for e in events) if events else None
    return stage.process(store, 0, offset, wm, routed.get(0, []))


def no_policy_action(i: int, t: int) -> dict:
    return enriched("action", t, event_id=f"ev-{i}", policy_decision=None, identity_id="agent-1")


def test_alert_created_once_then_updated_and_duplicates_dropped() -> None:
    stage = Stage2(DetectionEngine(), 1, LATENESS, "test")
    store = Store()
    out = feed(stage, store, [no_policy_action(1, T0)], offset=0)
    az01 = [a for a in out.alerts if a["detector"] == "AZ-01"]
    assert len(az01) == 1 and az01[0]["activity_id"] == 1
    again = feed(stage, store, [no_policy_action(1, T0)], offset=1)
    assert again.duplicates >= 1 and not again.alerts


def test_replayed_record_resends_the_same_alerts() -> None:
    stage = Stage2(DetectionEngine(), 1, LATENESS, "test")
    store = Store()
    first = feed(stage, store, [no_policy_action(1, T0)], offset=7)
    assert first.alerts
    # crash before delivery: the same record comes again
    replay = feed(stage, store, [no_policy_action(1, T0)], offset=7)
    assert replay.replayed and replay.alerts == first.alerts
    stage.mark_sent(store, 0, 7)
    assert not feed(stage, store, [no_policy_action(1, T0)], offset=7).alerts


def test_watermark_is_upstream_minus_lateness_and_monotonic() -> None:
    stage = Stage2(DetectionEngine(), 1, LATENESS, "test")
    store = Store()
    stage.process(store, 0, 0, T0 + 100_000, [])
    assert store[PARTITION_KEY.format(0)]["wm"] == T0 + 100_000 - LATENESS
    stage.process(store, 0, 1, T0, [])
    assert store[PARTITION_KEY.format(0)]["wm"] == T0 + 100_000 - LATENESS


def test_absence_timer_fires_when_watermark_passes_deadline() -> None:
    """SP-02: a task credential not revoked 5 min after task.completed."""
    stage = Stage2(DetectionEngine(), 1, LATENESS, "test")
    store = Store()
    issued = enriched(
        "credential.issued",
        T0,
        event_id="i1",
        task_id="task-9",
        credential_id="c-9",
        issued_via="jit",
        expires_at=T0 + 3_000_000,
    )
    completed = enriched("task.completed", T0 + 10_000, event_id="c1", task_id="task-9")
    out = feed(stage, store, [issued, completed], offset=0)
    assert not [a for a in out.alerts if a["detector"] == "SP-02"]
    # the watermark moves with later events elsewhere: just before, then past the deadline
    deadline = T0 + 10_000 + 300_000
    early = stage.process(store, 0, 1, deadline + LATENESS - 1, [])
    assert not [a for a in early.alerts if a["detector"] == "SP-02"]
    late = stage.process(store, 0, 2, deadline + LATENESS, [])
    assert [a["detector"] for a in late.alerts if a["detector"] == "SP-02"] == ["SP-02"]


def test_timer_index_rebuilt_from_store_after_restart() -> None:
    store = Store()
    stage = Stage2(DetectionEngine(), 1, LATENESS, "test")
    issued = enriched(
        "credential.issued",
        T0,
        event_id="i1",
        task_id="task-9",
        credential_id="c-9",
        issued_via="jit",
        expires_at=T0 + 3_000_000,
    )
    completed = enriched("task.completed", T0 + 10_000, event_id="c1", task_id="task-9")
    feed(stage, store, [issued, completed], offset=0)
    restarted = Stage2(DetectionEngine(), 1, LATENESS, "test")
    out = restarted.process(store, 0, 1, T0 + 10_000 + 300_000 + LATENESS, [])
    assert [a["detector"] for a in out.alerts] == ["SP-02"]


def test_late_events_counted_and_only_feed_single_event_detectors() -> None:
    stage = Stage2(DetectionEngine(), 1, LATENESS, "test")
    store = Store()
    stage.process(store, 0, 0, T0 + 10 * LATENESS, [])
    out = feed(stage, store, [no_policy_action(5, T0)], offset=1)
    assert out.late_events == 1
    assert [a["detector"] for a in out.alerts if a["detector"] == "AZ-01"] == ["AZ-01"]
