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
from tests.support.timing import fastest


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
    # the per-record time bounds (tests/support/hostile.timing_problems) are wall
    # clock: `python bench/fuzz_stage1.py` checks them and exits non-zero past them


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


def test_large_json_dead_letter_is_scanned_as_text_and_fast() -> None:
    """A whole-record dead letter of many small JSON objects was walked object by object
    for redaction: 50,000 tiny events (4 MB, record_too_large) took 104 ms and 50,000
    empty objects (150 KB, batch_too_large) 45 ms. Large JSON is scanned as text now;
    secrets in it, named ones too, are still redacted."""
    from pipeline.redact import MAX_JSON_WALK_BYTES, redact_bytes

    tiny = b'{"event_id":"e","event_type":"action","event_time":1764000000000,"platform":"p"}'
    empties = b"[" + b",".join([b"{}"] * 50_000) + b"]"
    assert len(empties) > MAX_JSON_WALK_BYTES
    assert redact_bytes(empties) == (empties, False)
    assert fastest(lambda: redact_bytes(empties), within=0.010) < 0.010
    secret = b'{"attributes":{"db_password":"hunter22x!","token":"ghp_' + b"Ab1" * 12 + b'"}}'
    payload = b"[" + b",".join([tiny] * 2000 + [secret] + [tiny] * 2000) + b"]"
    assert len(payload) > MAX_JSON_WALK_BYTES
    out, redacted = redact_bytes(payload)
    assert redacted
    assert b"hunter22x!" not in out and b"Ab1Ab1Ab1" not in out
    assert len(orjson.loads(out)) == 4001  # still JSON


def test_stage1_time_for_a_batch_of_empty_objects() -> None:
    """The same through stage 1: 50,000 ``{}`` is one batch_too_large dead letter, fast."""
    from pipeline.flow.stage1 import SourceRecord
    from tests.support.hostile import make_stage1

    stage1 = make_stage1()
    value = b"[" + b",".join([b"{}"] * 50_000) + b"]"
    record = SourceRecord(value, None, "t", 0, 0)
    asyncio.run(stage1.process([record]))
    out = asyncio.run(stage1.process([record]))
    assert fastest(lambda: asyncio.run(stage1.process([record])), within=0.050) < 0.050
    assert [dict(d.headers)["error.code"] for d in out.dead_letters] == [b"batch_too_large"]


def test_assignment_scan_of_a_large_text_is_fast_and_unchanged() -> None:
    """The name=value rule scanned every position of a text that held a keyword once:
    a 3 MB dead letter (record_too_large) took 280 ms, and finding every keyword
    first took 190 ms on text full of them. Keywords are looked for only before a
    separator now; the matches are those of ``finditer``."""
    import random

    from pipeline.redact import _ASSIGNMENT, _DENSE, _assignments, redact_bytes

    for fill in (b"lorem ipsum dolor sit amet ", b"p"):
        pad = fill * (3_000_000 // len(fill))
        payload = b'{"credential_id":"c1","attributes":{"pad":"' + pad + b'"}}'
        assert redact_bytes(payload) == (payload, False)
        assert fastest(lambda: redact_bytes(payload), within=0.050) < 0.050, fill
    # keywords everywhere (the rest of redact_bytes then spends ~40 ms in the token
    # patterns): the assignment scan alone, against finditer's on the same machine
    dense = '{"credential_id":"c1","pad":"' + "pass word key tok " * 160_000 + '"}'
    scan = fastest(lambda: list(_assignments(dense)), within=0.0)
    assert scan < 0.5 * fastest(lambda: list(_ASSIGNMENT.finditer(dense)), within=0.0)
    rng = random.Random(3)
    parts = ["pass", "Pass", "pAss", "KEY", "token=", "secret: ", '"password": "', "x", "=",
             ":", " ", "AbC123xyz!", "\u0130", "_", "'", "sig", "Session_Token=",
             "a1B2c3D4e5F6g7H8"]  # fmt: skip
    for _ in range(20_000):
        text = "".join(rng.choice(parts) for _ in range(rng.randint(1, 12)))
        assert [m.span() for m in _assignments(text)] == [
            m.span() for m in _ASSIGNMENT.finditer(text)
        ], text
    # sparse separators in long text: the windowed path, not finditer's
    filler = ["lorem ", "ipsum ", "KEYS ", "pass", "\u0130", "sigma ", "x" * 40]
    for _ in range(300):
        pieces = []
        for _ in range(rng.randint(1, 6)):
            pieces += [rng.choice(filler) for _ in range(rng.randint(250, 400))]
            pieces += [rng.choice(parts) for _ in range(rng.randint(1, 4))]
        text = "".join(pieces)
        assert (text.count(":") + text.count("=")) * _DENSE <= len(text)
        assert [m.span() for m in _assignments(text)] == [
            m.span() for m in _ASSIGNMENT.finditer(text)
        ], text
