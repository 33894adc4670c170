"""Hostile records at volume through stage 1 in-process (issue 15, item 4), and the bugs
the fuzzing found, each pinned by its own test.

The default test runs 12,000 records of ``tests/support/hostile.py`` (seed 15) in
well under a minute; ``bench/fuzz_stage1.py`` runs the 100,000 and prints the figures.
"""

from __future__ import annotations

import asyncio

import orjson

from pipeline.flow.schemas import SchemaResolver
from pipeline.flow.validate import Validator
from tests.support.events import make_event
from tests.support.hostile import HostileRecords, fuzz_stage1

#: Records with at most this many events + dead letters must each take <= 50 ms;
#: bigger batches (up to 10,000 events) are judged per event or dead letter.
SMALL_ITEMS = 1000
#: Generous against the ~9 µs per valid event and ~17 µs per dead letter measured,
#: since the machine is shared.
MAX_US_PER_ITEM = 60.0


def validator() -> Validator:
    return Validator(SchemaResolver(), 2 * 1024 * 1024 - 4096, 10_000)


def test_hostile_records_are_deterministic_by_seed() -> None:
    first = list(HostileRecords(7).make(300))
    assert first == list(HostileRecords(7).make(300))
    assert first != list(HostileRecords(8).make(300))
    assert len({kind for kind, _ in first}) >= 15


def test_hostile_records_through_stage1() -> None:
    report = asyncio.run(fuzz_stage1(15, 12_000))
    print(report.summary())
    assert report.problems == []
    assert report.records == len(report.times_s) == 12_000
    assert report.events > 0 and report.dead_letters > 0
    # every record is accounted for: events, dead letters, or a batch of zero events
    assert report.empty == sum(1 for n in report.items if n == 0)
    assert report.max_s_up_to(SMALL_ITEMS) <= 0.050, report.summary()
    assert report.max_us_per_item(SMALL_ITEMS) <= MAX_US_PER_ITEM, report.summary()


# ---- bugs found by the fuzzing -----------------------------------------------------------


def test_deeply_nested_batch_element_is_rejected_alone() -> None:
    """A batch element nested deeper than orjson writes (254) and repr can walk (~1000):
    it made the whole record an ``internal_error`` (with a traceback in the log)."""
    deep = b"[" * 1000 + b"1" + b"]" * 1000
    deep_map = b'{"a":' * 600 + b"1" + b"}" * 600
    value = b"[" + orjson.dumps(make_event(0)) + b"," + deep + b"," + deep_map + b","
    value += orjson.dumps(make_event(1)) + b"]"
    result = validator().validate(value)
    assert [e["event_id"] for e in result.events] == [
        make_event(0)["event_id"],
        make_event(1)["event_id"],
    ]
    assert [(r.code, r.batch_index) for r in result.rejections] == [
        ("invalid_event", 1),
        ("missing_field", 2),
    ]
    # each element's bytes are still the element, replayable on its own
    assert result.rejections[0].payload == deep
    assert result.rejections[1].payload == deep_map
