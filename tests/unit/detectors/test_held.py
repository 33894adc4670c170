"""The compact form of held events (``detectors/held.py``): every event stage 1 makes of
simulator traffic comes back exactly (values and key order at every level), smaller."""

from __future__ import annotations

import asyncio
from functools import cache
from typing import Any

import orjson
import pytest

from pipeline.codec import AvroEncoder
from pipeline.detectors.base import REGISTRY_GAP
from pipeline.detectors.engine import DetectionEngine
from pipeline.detectors.held import (
    CREDENTIAL_VIEW,
    IDENTITY_VIEW,
    LIFETIME_DERIVED,
    PACKED,
    pack,
    unpack,
)
from pipeline.enrichment.views import (
    UNKNOWN_CREDENTIAL,
    UNKNOWN_IDENTITY,
    GarbageReport,
    credential_view,
    identity_view,
)
from pipeline.flow.messages import SubjectCopy
from pipeline.flow.route import decode_subject_batch, stage1_subjects
from pipeline.flow.schemas import SchemaResolver
from pipeline.flow.stage1 import SourceRecord, Stage1
from pipeline.flow.validate import Validator
from pipeline.simulate import Simulator
from pipeline.simulate.scenarios import INJECTORS
from tests.support.reference_enricher import MemoryEnricher

Event = dict[str, Any]
EVENTS = 4000


async def _stage1(events: list[Event], registry: list[Event]) -> list[Event]:
    engine = DetectionEngine()
    stage1 = Stage1(
        Validator(SchemaResolver(), 2 * 1024 * 1024, 10_000),
        6,
        MemoryEnricher(identities={e["identity_id"]: e for e in registry}),
        stage1_subjects(engine.subject_kinds_for, True),
        input_partitions=1,
    )
    stage1.inputs.assign({0}, 0.0)
    encode = AvroEncoder().batch
    out: dict[str, Event] = {}
    for offset, start in enumerate(range(0, len(events), 250)):
        record = SourceRecord(encode(events[start : start + 250]), None, "events", 0, offset)
        for _, value in (await stage1.process([record])).subject_records:
            for item in decode_subject_batch(value)[1]:
                if isinstance(item, SubjectCopy):
                    out[item.event["event_id"]] = item.event
    return list(out.values())


@cache
def stage1_events() -> list[Event]:
    """Simulator traffic (every injected violation) as stage 2 receives it, plus copies
    of some events as if enriched during a registry gap, or before their credential
    was known (the simulator issues every credential it uses)."""
    sim = Simulator(5, start_ms=1_767_225_600_000, violations={d: 0.03 for d in sorted(INJECTORS)})
    events = asyncio.run(_stage1(sim.events(EVENTS), sim.registry()))
    gap = [{**e, REGISTRY_GAP: True} for e in events[::7]]
    unknown = [{**e, "credential": UNKNOWN_CREDENTIAL} for e in events[::5] if e["credential"]]
    return events + gap + unknown


def keys_at_every_level(value: Any) -> Any:
    """The value's dict keys in order, recursively (== also compares the values)."""
    if isinstance(value, dict):
        return [(k, keys_at_every_level(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [keys_at_every_level(v) for v in value]
    return value


def test_the_traffic_has_every_shape_stage1_makes() -> None:
    events = stage1_events()
    assert len(events) > EVENTS
    assert any("_secrets" in e for e in events)
    assert any(REGISTRY_GAP in e for e in events)
    assert any(e["identity"] and not e["identity"]["known"] for e in events)
    assert any(e["credential"] is None for e in events)
    assert any(e["credential"] and not e["credential"]["known"] for e in events)
    assert any(e["credential"] and e["credential"]["lifetime_ms"] is not None for e in events)
    assert any(e["credential"] and e["credential"]["revoked_at"] is not None for e in events)


def test_unpack_restores_every_event_exactly() -> None:
    for event in stage1_events():
        before = orjson.dumps(event)
        packed = pack(event)
        assert orjson.dumps(event) == before  # the event itself is not changed
        assert packed[PACKED] is not None
        # in memory, and as a restart reads it back from the changelog
        for held in (packed, orjson.loads(orjson.dumps(packed))):
            again = unpack(held)
            assert again == event
            assert keys_at_every_level(again) == keys_at_every_level(event)
            assert orjson.dumps(again) == before


def test_pack_drops_the_nulls() -> None:
    events = stage1_events()
    whole = packed = 0
    for event in events:
        small = orjson.dumps(pack(event))
        assert len(small) < len(orjson.dumps(event))
        assert b"null" not in small.replace(b'"null"', b"")
        whole += len(orjson.dumps(event))
        packed += len(small)
    assert packed < 0.8 * whole
    assert any(pack(e)[PACKED] & LIFETIME_DERIVED for e in events)


def test_a_whole_event_is_unpacked_as_it_is() -> None:
    """Held events written before the compact form (and events in no stage-1 layout,
    which are held whole) come back as the same object."""
    event = stage1_events()[0]
    assert unpack(event) is event
    loaded = orjson.loads(orjson.dumps(event))
    assert unpack(loaded) is loaded


@pytest.mark.parametrize(
    "change",
    [
        lambda e: {k: v for k, v in e.items() if k != "credential"},  # not enriched
        lambda e: {"extra": 1, **e},
        lambda e: {**e, "extra": 1},
        lambda e: {**e, "event_time": None},
        lambda e: {**e, "_secrets": None},
        lambda e: dict(reversed(e.items())),
    ],
)
def test_other_layouts_are_held_whole(change: Any) -> None:
    event = change(stage1_events()[0])
    assert pack(event) is event
    assert unpack(event) is event


def test_views_in_another_layout_are_kept_as_they_are() -> None:
    event = next(e for e in stage1_events() if e["identity"] and e["credential"])
    # an identity view from before ``mode``; a lifetime that is not the difference
    old_view = {k: v for k, v in event["identity"].items() if k != "mode"}
    odd = {**event["credential"], "lifetime_ms": 5}
    for changed in ({**event, "identity": old_view}, {**event, "credential": odd}):
        packed = pack(changed)
        assert PACKED in packed
        assert keys_at_every_level(unpack(orjson.loads(orjson.dumps(packed)))) == (
            keys_at_every_level(changed)
        )
    assert pack({**event, "identity": old_view})["identity"] == old_view


def test_the_view_layouts_are_those_enrichment_builds() -> None:
    report = GarbageReport()
    identity = identity_view("k", ["ai_agent", "o", "t", "prod", "high", "[]", "active"], report)
    credential = credential_view("k", ["i", "jit", "jit", "[]", "1", "2", "", "", "", "t"], report)
    assert tuple(identity) == tuple(UNKNOWN_IDENTITY) == IDENTITY_VIEW
    assert tuple(credential) == tuple(UNKNOWN_CREDENTIAL) == CREDENTIAL_VIEW
