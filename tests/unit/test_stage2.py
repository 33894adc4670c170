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
    # crash before delivery: a new worker gets the same record again
    stage = Stage2(DetectionEngine(), 1, LATENESS, "test")
    replay = feed(stage, store, [no_policy_action(1, T0)], offset=7)
    assert replay.replayed and replay.alerts == first.alerts and replay.skipped == 1
    stage.mark_sent(store, 0, 7)
    stage = Stage2(DetectionEngine(), 1, LATENESS, "test")
    again = feed(stage, store, [no_policy_action(1, T0)], offset=7)
    assert not again.alerts and again.skipped == 1


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
    early = stage.process(store, 0, 1, deadline + LATENESS - 1, out.items)
    assert not [a for a in early.alerts if a["detector"] == "SP-02"]
    late = stage.process(store, 0, 2, deadline + LATENESS, early.items)
    # A task judges once the partition's progress past the deadline came back (the task
    # clock: what other partitions send it before that time has arrived by then).
    assert not [a for a in late.alerts if a["detector"] == "SP-02"]
    back = stage.process(store, 0, 3, deadline + LATENESS, late.items)
    assert [a["detector"] for a in back.alerts if a["detector"] == "SP-02"] == ["SP-02"]


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
    first = feed(stage, store, [issued, completed], offset=0)
    restarted = Stage2(DetectionEngine(), 1, LATENESS, "test")
    past = T0 + 10_000 + 300_000 + LATENESS
    out = restarted.process(store, 0, 1, past, first.items)
    assert not out.alerts  # the task waits for its partition's progress past the deadline
    out = restarted.process(store, 0, 2, past, out.items)
    assert [a["detector"] for a in out.alerts] == ["SP-02"]


def test_late_events_counted_and_only_feed_single_event_detectors() -> None:
    stage = Stage2(DetectionEngine(), 1, LATENESS, "test")
    store = Store()
    stage.process(store, 0, 0, T0 + 10 * LATENESS, [])
    out = feed(stage, store, [no_policy_action(5, T0)], offset=1)
    assert out.late_events == 1
    assert [a["detector"] for a in out.alerts if a["detector"] == "AZ-01"] == ["AZ-01"]


# -- units: many records, one write per state, and what survives a crash ------------


def records_for(stage: Stage2, batches: list[list[dict]], first_offset: int = 0) -> list:
    out = []
    for n, events in enumerate(batches):
        routed = route(events, 1, stage.engine.subject_kinds_for)
        wm = max(e["event_time"] for e in events)
        out.append((first_offset + n, wm, routed.get(0, [])))
    return out


def traffic(n: int) -> list[list[dict]]:
    """n small records: unattributed actions (AZ-01) and a task that leaves a credential."""
    batches = []
    for i in range(n):
        t = T0 + i * 1_000
        batch = [no_policy_action(100 + i, t)]
        if i == 1:
            batch.append(
                enriched(
                    "credential.issued",
                    t,
                    event_id="iss",
                    task_id="task-u",
                    credential_id="c-u",
                    issued_via="jit",
                    expires_at=t + 3_000_000,
                )
            )
        if i == 2:
            batch.append(enriched("task.completed", t, event_id="done", task_id="task-u"))
        batches.append(batch)
    return batches


def comparable(alerts: list[dict]) -> list[tuple]:
    return sorted((a["alert_id"], a["activity_id"], a["detector"]) for a in alerts)


def test_a_unit_of_records_finds_what_the_records_find_one_by_one() -> None:
    batches = traffic(6)
    one = Stage2(DetectionEngine(), 1, LATENESS, "test")
    store_one = Store()
    alerts_one: list[dict] = []
    for offset, wm, items in records_for(one, batches):
        alerts_one += one.process(store_one, 0, offset, wm, items).alerts
        one.mark_sent(store_one, 0, offset)
    unit = Stage2(DetectionEngine(), 1, LATENESS, "test")
    store_unit = Store()
    out = unit.process_unit(store_unit, 0, records_for(unit, batches))
    assert comparable(out.alerts) == comparable(alerts_one) and out.alerts
    keys = [w[0] for w in out.writes]
    assert len(keys) == len(set(keys)), "each state is written once per unit"
    assert keys[0].startswith("__redo__:0:") and keys[1] == PARTITION_KEY.format(0)


def test_replayed_offsets_are_skipped_and_mark_sent_keeps_the_partition_position() -> None:
    stage = Stage2(DetectionEngine(), 1, LATENESS, "test")
    store = Store()
    records = records_for(stage, traffic(4))
    stage.process_unit(store, 0, records[:2])
    from pipeline.flow.stage2 import apply_writes

    out = stage.process_unit(store, 0, records[:3])  # a batch that overlaps the last one
    assert out.skipped == 2 and not out.duplicates
    apply_writes(store, out.writes)
    apply_writes(store, stage.sent(0))
    entry = store[PARTITION_KEY.format(0)]
    assert entry["done"] == 2 and entry["newest"] == T0 + 2_000 and "sources" in entry
    assert entry["out"] == {"sent": True}


def test_a_crash_that_loses_the_state_writes_but_not_the_unit_entry_loses_nothing() -> None:
    """Only the redo chunks and the partition entry reached the changelog."""
    from pipeline.flow.stage2 import apply_writes

    records = records_for(Stage2(DetectionEngine(), 1, LATENESS, "test"), traffic(6))
    # uninterrupted: two units, delivered
    ref = Stage2(DetectionEngine(), 1, LATENESS, "test")
    ref_store = Store()
    ref_alerts: list[dict] = []
    for unit in (records[:3], records[3:]):
        out = ref.process_unit(ref_store, 0, unit)
        apply_writes(ref_store, out.writes)
        ref_alerts += out.alerts
        apply_writes(ref_store, ref.sent(0))
    # crashed: the first unit's per-subject writes are lost, its outputs never sent
    crashed = Stage2(DetectionEngine(), 1, LATENESS, "test")
    store = Store()
    first = crashed.process_unit(store, 0, records[:3])
    entry_at = next(i for i, w in enumerate(first.writes) if w[0] == PARTITION_KEY.format(0))
    apply_writes(store, first.writes[: entry_at + 1])
    restarted = Stage2(DetectionEngine(), 1, LATENESS, "test")
    again = restarted.process_unit(store, 0, records)  # the consumer replays from the start
    assert again.replayed and again.skipped == 3
    assert restarted.stats.states_restored == len(first.writes) - entry_at - 1
    assert comparable(again.alerts) == comparable(ref_alerts)
    apply_writes(store, again.writes)
    for key, value in ref_store.items():
        if not key.startswith("__"):
            assert store[key] == value, key


def test_redo_is_split_into_bounded_chunks(monkeypatch: Any) -> None:
    from pipeline.flow import stage2 as stage2_module

    monkeypatch.setattr(stage2_module, "REDO_CHUNK_BYTES", 300)
    stage = Stage2(DetectionEngine(), 1, LATENESS, "test")
    store = Store()
    out = stage.process_unit(store, 0, records_for(stage, traffic(5)))
    chunks = [w for w in out.writes if w[0].startswith("__redo__")]
    entry = next(w[1] for w in out.writes if w[0] == PARTITION_KEY.format(0))
    assert len(chunks) > 1 and entry["redo"] == len(chunks)
    import orjson

    restored: dict = {}
    for _, value, raw in chunks:
        assert orjson.loads(raw) == value  # the spliced bytes decode to the chunk
        restored.update(value["states"])
    states = {k: v for k, v, _ in out.writes if not k.startswith("__")}
    assert orjson.loads(orjson.dumps(restored)) == orjson.loads(orjson.dumps(states))


def test_input_resumed_past_the_recovered_state_is_read_again() -> None:
    """The changelog was read short of its end (Tansu's lagging high watermark)."""
    from pipeline.flow import stage2 as stage2_module
    from pipeline.flow.stage2 import apply_writes

    stage = Stage2(DetectionEngine(), 1, LATENESS, "test")
    store = Store()
    records = records_for(stage, traffic(6))
    out = stage.process_unit(store, 0, records[:2])
    apply_writes(store, out.writes)
    apply_writes(store, stage.sent(0))  # state covers offsets 0..1
    restarted = Stage2(DetectionEngine(), 1, LATENESS, "test")
    assert restarted.rewind(store, 0, 4) == (True, 2)  # offsets 2, 3 were committed, not kept
    assert restarted.rewind(store, 0, 5) == (True, None)  # buffered records: skipped
    assert restarted.rewind(store, 0, 2) == (False, None)  # the rewound offsets arrive
    assert restarted.rewind(store, 0, 3) == (False, None) and restarted.stats.offset_gaps == 1
    fresh = Stage2(DetectionEngine(), 1, LATENESS, "test")
    assert fresh.rewind(store, 0, 2) == (False, None), "no gap: nothing to read again"
    # offsets that never come back (retention) stop the wait after the patience
    gone = Stage2(DetectionEngine(), 1, LATENESS, "test")
    assert gone.rewind(store, 0, 9) == (True, 2)
    gone._rewinding[0] = (2, 0.0)
    assert gone.rewind(store, 0, 9) == (False, None)
    assert stage2_module.REWIND_PATIENCE_S > 0


def test_unsent_outputs_of_an_older_version_are_resent_as_typed_messages() -> None:
    """A partition entry written before the typed messages (a rolling upgrade)."""
    from pipeline.flow.messages import FindingNotice, MetricDelta, Progress

    delta = {"w": 60_000, "ws": T0, "dim": "global", "c": {"actions": 1}}
    store = Store()
    store[PARTITION_KEY.format(0)] = {
        "done": 3,
        "wm": None,
        "out": {
            "alerts": [],
            "metrics": [],
            "sent": False,
            "items": [
                ["progress", "0", {"from": 0, "newest": T0, "seen": None}, False],
                ["metrics", "global", {"src": [0, 3, 0], "delta": delta}, False],
                [
                    "task",
                    "task-1",
                    {
                        "event_id": "finding:a-1:task-1",
                        "event_type": "_finding",
                        "event_time": T0,
                        "detector": "SP-01",
                    },
                    False,
                ],
            ],
        },
    }
    stage = Stage2(DetectionEngine(), 1, LATENESS, "test")
    out = stage.process_unit(store, 0, [])
    assert out.replayed and out.items == [
        Progress(0, 0, T0, None),
        MetricDelta("global", (0, 3, 0), delta),  # type: ignore[arg-type]
        FindingNotice("task-1", "a-1", "SP-01", T0),
    ]
