"""Routing to stage 2: stable partitions, fan-out by subject, bounded internal records."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from pipeline.detectors.engine import DetectionEngine
from pipeline.flow.messages import (
    FindingNotice,
    InternalFormatError,
    Message,
    MetricDelta,
    Progress,
    SubjectCopy,
    from_json,
    to_json,
)
from pipeline.flow.route import (
    copies,
    decode_subject_batch,
    encode_bounded,
    encode_subject_batch,
    partition_for,
    route,
)
from pipeline.flow.validate import validate_event
from tests.support.events import make_event
from tests.unit.detectors.factory import enriched

T0 = 1_764_000_000_000


def test_partition_is_stable_across_processes() -> None:
    """``hash()`` is salted per process; the routing hash must not be."""
    here = partition_for("identity:agent-7", 6)
    code = (
        "from pipeline.flow.route import partition_for; print(partition_for('identity:agent-7', 6))"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(other.stdout) == here


def test_each_event_has_one_primary_copy_and_one_copy_per_subject() -> None:
    engine = DetectionEngine()
    events = [validate_event(make_event(i)) for i in range(40)]
    routed = route(events, 6, engine.subject_kinds_for)
    items = [item for part in routed.values() for item in part]
    primaries = [c.event["event_id"] for c in copies(items) if c.primary]
    assert sorted(primaries) == sorted(e["event_id"] for e in events)
    for event in events:
        subjects = {
            (c.kind, c.subject) for c in copies(items) if c.event["event_id"] == event["event_id"]
        }
        assert subjects == set(engine.subject_kinds_for(event))
    for partition, part in routed.items():
        assert all(partition_for(f"{c.kind}:{c.subject}", 6) == partition for c in copies(part))


def test_unattributed_events_still_reach_an_identity_subject() -> None:
    engine = DetectionEngine()
    event = validate_event(make_event(0, event_type="action", identity_id=None))
    assert ("identity", "<unattributed>") in engine.subject_kinds_for(event)


def test_encode_bounded_splits_keeps_order_and_puts_watermark_last() -> None:
    engine = DetectionEngine()
    events = [validate_event(make_event(i, justification="x" * 2000)) for i in range(300)]
    items = [item for part in route(events, 1, engine.subject_kinds_for).values() for item in part]
    parts = encode_bounded(items, 1234, max_bytes=64 * 1024)
    assert len(parts) > 1
    assert all(len(p) <= 64 * 1024 for p in parts)
    decoded = [decode_subject_batch(p) for p in parts]
    assert [wm for wm, _ in decoded] == [None] * (len(parts) - 1) + [1234]
    rejoined = [item for _, chunk in decoded for item in chunk]
    assert rejoined == items


def test_encode_bounded_small_input_is_one_record() -> None:
    assert len(encode_bounded([], 5)) == 1
    assert decode_subject_batch(encode_bounded([], 5)[0]) == (5, [])


def test_an_event_feeding_several_subjects_is_written_once() -> None:
    events = [enriched("credential.issued", T0, event_id="e1", credential_id="c-1")]
    items = route(events, 1, DetectionEngine().subject_kinds_for)[0]
    assert len(items) >= 2, "the event feeds its identity, credential and task"
    value = encode_subject_batch(items, T0)
    assert value.count(b'"event_id":"e1"') == 1
    wm, decoded = decode_subject_batch(value)
    assert wm == T0 and decoded == items


def test_internal_records_of_the_previous_layout_still_decode() -> None:
    event = enriched("action", T0, event_id="old")
    old = orjson.dumps({"wm": T0, "items": [["identity", "agent-1", event, True]]})
    assert decode_subject_batch(old) == (T0, [SubjectCopy("identity", "agent-1", event, True)])


def _shared_views(events: list[dict]) -> list[dict]:
    """Give the events of one identity one shared view, as ``RedisEnricher.enrich`` does."""
    views: dict[str, dict] = {}
    for event in events:
        event["identity"] = views.setdefault(event["identity_id"], dict(event["identity"]))
    return events


def test_a_view_shared_by_many_events_is_written_once_per_record() -> None:
    events = _shared_views(
        [enriched("action", T0 + i, identity_id=f"agent-{i % 3}") for i in range(60)]
    )
    before = orjson.dumps(events)
    items = route(events, 1, DetectionEngine().subject_kinds_for)[0]
    value = encode_subject_batch(items, T0)
    assert orjson.dumps(events) == before, "encoding must leave the events as they were"
    assert value.count(b'"risk_tier"') == 3, "one identity view per distinct identity"
    _, decoded = decode_subject_batch(value)
    assert decoded == items
    by_identity = {}
    for copy in copies(decoded):
        event = copy.event
        view = by_identity.setdefault(event["identity_id"], event["identity"])
        assert event["identity"] is view


def test_each_split_record_carries_the_views_of_its_own_events() -> None:
    events = _shared_views(
        [
            enriched("action", T0 + i, identity_id=f"agent-{i % 7}", justification="j" * 900)
            for i in range(200)
        ]
    )
    items = route(events, 1, DetectionEngine().subject_kinds_for)[0]
    parts = encode_bounded(items, T0, max_bytes=32 * 1024)
    assert len(parts) > 3 and all(len(p) <= 32 * 1024 for p in parts)
    rejoined = [item for p in parts for item in decode_subject_batch(p)[1]]
    assert rejoined == items


def test_hostile_subjects_do_not_break_the_size_bound() -> None:
    """Control characters cost 6 bytes each in JSON: the bound must still hold."""
    nasty = '\x01\x02"\\' * 60
    events = [enriched("action", T0 + i, identity_id=f"{nasty}{i}") for i in range(400)]
    items = route(events, 1, DetectionEngine().subject_kinds_for)[0]
    parts = encode_bounded(items, None, max_bytes=16 * 1024)
    assert all(len(p) <= 16 * 1024 for p in parts)
    rejoined = [item for p in parts for item in decode_subject_batch(p)[1]]
    assert rejoined == items


def test_internal_records_of_the_per_event_layout_still_decode() -> None:
    """Records written before views were shared (views inline in each event)."""
    event = enriched("action", T0, event_id="inline")
    old = orjson.dumps({"wm": T0, "events": [event], "refs": [["identity", "agent-1", 0, True]]})
    assert decode_subject_batch(old) == (T0, [SubjectCopy("identity", "agent-1", event, True)])


def test_every_message_kind_round_trips_in_order() -> None:
    event = enriched("task.completed", T0, event_id="e1", task_id="task-1")
    delta = {"w": 60_000, "ws": T0, "dim": "global", "c": {"actions": 1}}
    messages: list[Message] = [
        SubjectCopy("task", "task-1", event, True),
        MetricDelta("global", (2, 17, 0), delta),  # type: ignore[arg-type]
        Progress(1, 2, T0, None),
        FindingNotice("task-1", "a-1", "SP-01", T0),
        SubjectCopy("identity", "agent-1", event, False),
    ]
    wm, decoded = decode_subject_batch(encode_subject_batch(messages, T0))
    assert wm == T0 and decoded == messages
    assert decoded[0].event is decoded[4].event  # type: ignore[union-attr]
    assert [from_json(to_json(m)) for m in messages] == messages


def test_records_of_the_untyped_layout_decode_as_typed_messages() -> None:
    """A rolling upgrade: records written by the previous version are read, typed."""
    event = enriched("action", T0, event_id="e1", task_id="task-1")
    delta = {"w": 60_000, "ws": T0, "dim": "global", "c": {"actions": 1}}
    old = orjson.dumps(
        {
            "wm": T0,
            "events": [event],
            "refs": [["identity", "agent-1", 0, True]],
            "views": {},
        }
    )
    assert decode_subject_batch(old) == (T0, [SubjectCopy("identity", "agent-1", event, True)])
    fake = [
        [
            "progress",
            "1",
            {"event_id": "progress:2:5:4", "from": 2, "newest": 5, "seen": 4, "event_time": 5},
            False,
        ],
        [
            "metrics",
            "global",
            {"event_id": "d:2:9:0", "event_time": T0, "src": [2, 9, 0], "delta": delta},
            False,
        ],
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
    ]
    _, decoded = decode_subject_batch(orjson.dumps({"wm": None, "items": fake}))
    assert decoded == [
        Progress(1, 2, 5, 4),
        MetricDelta("global", (2, 9, 0), delta),  # type: ignore[arg-type]
        FindingNotice("task-1", "a-1", "SP-01", T0),
    ]
    assert decoded[2].id == "finding:a-1:task-1"  # type: ignore[union-attr]


def test_a_record_this_version_cannot_read_fails_loudly() -> None:
    for value in (
        orjson.dumps({"v": 3, "wm": None, "events": [], "m": []}),
        orjson.dumps({"v": 2, "wm": None, "events": [], "m": [["x", 1]]}),
        orjson.dumps({"v": 2, "wm": None, "events": [], "m": [["c", "task", "t", 5, True]]}),
        b"not json",
        b"[]",
    ):
        with pytest.raises(InternalFormatError):
            decode_subject_batch(value)
