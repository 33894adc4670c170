"""The compiled Avro reader returns exactly what fastavro returns, or hands over to it.

Random events (every field, multi-byte lengths, long extremes, unicode) and
random mutations of their bytes (flips, truncations, insertions) go through
both; wherever the compiled reader answers, fastavro gives the same datum at
the same position, and ``decode_avro`` gives the same result or the same
rejection as a fastavro-only decode.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import random
import struct
from typing import Any

import fastavro
import pytest

from pipeline.avro_reader import Fallback, compile_reader
from pipeline.codec import (
    AvroEncoder,
    DecodedRecord,
    WriterSchema,
    batch_schema,
    decode_avro,
    event_schema,
    local_catalogue,
    prepare_writer_schema,
)
from pipeline.errors import RejectedInput
from pipeline.records import EVENT_FIELDS
from tests.support.events import make_event

CATALOGUE = local_catalogue()
EVENT_WS = CATALOGUE[1]
BATCH_WS = CATALOGUE[2]
TEXTS = ["", "a", "prod", "é", "日本語", "😀 emoji", "x" * 63, "y" * 64, "z" * 300, "ü" * 200]
LONGS = [0, 1, -1, 63, 64, -64, -65, 2**31, -(2**31), 2**62 - 1, -(2**62)]
#: Need a 10-byte varint: left to fastavro (its 64-bit arithmetic is the reference).
EXTREME_LONGS = [2**62, 2**63 - 1, -(2**62) - 1, -(2**63)]


def random_text(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return rng.choice(TEXTS)
    alphabet = "abcXYZ019-_.:/ é日😀\n\t\x00"
    return "".join(rng.choice(alphabet) for _ in range(rng.choice([1, 5, 40, 70, 200])))


def random_event(rng: random.Random, longs: list[int] = LONGS) -> dict[str, Any]:
    """Any datum the event schema can carry (not necessarily a valid event)."""
    event: dict[str, Any] = {}
    for name in EVENT_FIELDS:
        if name in ("event_id", "event_type", "platform"):
            event[name] = random_text(rng)
        elif name in ("event_time",):
            event[name] = rng.choice([*longs, 1_764_000_000_000])
        elif name in ("latency_ms", "expires_at"):
            event[name] = rng.choice([None, *longs])
        elif name == "scopes":
            event[name] = rng.choice(
                [None, [], [random_text(rng) for _ in range(rng.choice([1, 3, 70]))]]
            )
        elif name == "attributes":
            n = rng.choice([0, 1, 2, 65])
            event[name] = {random_text(rng): random_text(rng) for _ in range(n)}
        else:
            event[name] = rng.choice([None, None, random_text(rng)])
    return event


def fastavro_only(writer: WriterSchema) -> WriterSchema:
    return dataclasses.replace(writer, reader=None)


def outcome(value: bytes, writer: WriterSchema) -> DecodedRecord | tuple[str, str]:
    try:
        return decode_avro(value, writer)
    except RejectedInput as exc:
        return (exc.code, exc.message)


def fastavro_read(value: bytes, writer: WriterSchema) -> tuple[Any, int] | None:
    buf = io.BytesIO(value)
    buf.seek(5)
    try:
        datum = fastavro.schemaless_reader(buf, writer.parsed, None)
    except Exception:
        return None
    return datum, buf.tell()


def assert_agrees(value: bytes, writer: WriterSchema) -> bool:
    """Checks the contract on ``value``; True when the compiled reader answered."""
    assert writer.reader is not None
    try:
        got = writer.reader(value, 5)
    except Fallback:
        got = None
    if got is not None:
        assert got == fastavro_read(value, writer)
    assert outcome(value, writer) == outcome(value, fastavro_only(writer))
    return got is not None


def test_local_schemas_compile() -> None:
    assert EVENT_WS.reader is not None and BATCH_WS.reader is not None


def test_random_events_single_and_batch() -> None:
    rng = random.Random(1)
    enc = AvroEncoder()
    answered = 0
    for _ in range(200):
        event = random_event(rng)
        answered += assert_agrees(enc.event(event), EVENT_WS)
        batch = [random_event(rng) for _ in range(rng.choice([0, 1, 5, 20]))]
        answered += assert_agrees(enc.batch(batch), BATCH_WS)
    assert answered == 400  # well-formed input never needs fastavro


def test_extreme_longs_agree() -> None:
    rng = random.Random(4)
    enc = AvroEncoder()
    for _ in range(200):
        assert_agrees(enc.event(random_event(rng, LONGS + EXTREME_LONGS)), EVENT_WS)


def test_realistic_events_decode_as_before() -> None:
    events = [make_event(i) for i in range(300)]
    value = AvroEncoder().batch(events)
    fast = decode_avro(value, BATCH_WS)
    assert fast == decode_avro(value, fastavro_only(BATCH_WS))
    assert [list(e) for e in fast.events] == [list(EVENT_FIELDS)] * 300


def test_mutated_bytes_agree_with_fastavro() -> None:
    rng = random.Random(2)
    enc = AvroEncoder()
    answered = 0
    for n in range(1000):
        value = bytearray(enc.batch([random_event(rng) for _ in range(rng.choice([1, 3]))]))
        kind = n % 4
        if kind == 0:  # flip a byte
            at = rng.randrange(5, len(value))
            value[at] = rng.randrange(256)
        elif kind == 1:  # truncate
            del value[rng.randrange(5, len(value)) :]
        elif kind == 2:  # insert
            at = rng.randrange(5, len(value))
            value[at:at] = bytes(rng.randrange(256) for _ in range(rng.choice([1, 2, 9])))
        else:  # several flips in the varint-heavy start
            for _ in range(3):
                at = rng.randrange(5, min(len(value), 40))
                value[at] = rng.choice([0x00, 0x01, 0x02, 0x03, 0x7F, 0x80, 0xFF])
        answered += assert_agrees(bytes(value), BATCH_WS)
    assert answered > 100  # mutations that stay well-formed are still decoded fast


def varint(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append(z & 0x7F | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def string(s: str) -> bytes:
    raw = s.encode()
    return varint(len(raw)) + raw


def minimal_event(event_id: str = "e1") -> bytes:
    """An event body by hand: required fields, every union null, empty attributes."""
    body = string(event_id) + string("action") + varint(1_764_000_000_000) + string("p")
    nullable = len(EVENT_FIELDS) - 5  # all but the 4 required ones and attributes
    return body + b"\x00" * nullable + varint(0)


def test_hand_encodings() -> None:
    head = b"\x00" + struct.pack(">I", 2)
    two_blocks = head + varint(1) + minimal_event("a") + varint(1) + minimal_event("b") + varint(0)
    assert assert_agrees(two_blocks, BATCH_WS)
    assert [e["event_id"] for e in decode_avro(two_blocks, BATCH_WS).events] == ["a", "b"]
    # A negative block count (with its byte size) is valid Avro: fastavro reads it.
    negative = head + varint(-1) + varint(len(minimal_event())) + minimal_event() + varint(0)
    assert not assert_agrees(negative, BATCH_WS)
    assert len(decode_avro(negative, BATCH_WS).events) == 1
    # A union branch out of range, a negative length, a 10-byte varint, bad UTF-8.
    bad_union = head + varint(1) + minimal_event()[:-2] + b"\x06" + varint(0) + varint(0)
    assert not assert_agrees(bad_union, BATCH_WS)
    negative_len = head + varint(1) + varint(-3) + b"abc"
    assert not assert_agrees(negative_len, BATCH_WS)
    event_start = head + varint(1) + string("e") + string("action")
    for time_bytes in (b"\xff" * 9 + b"\x01", b"\xff" * 9 + b"\x7f", b"\xff" * 10 + b"\x01"):
        # 10 bytes (the 10th overflows 64 bits in fastavro unless it is 1), 11 bytes
        assert not assert_agrees(
            event_start + time_bytes + minimal_event()[16:] + b"\x00", BATCH_WS
        )
    bad_utf8 = head + varint(1) + varint(2) + b"\xc3\x28" + minimal_event()[3:]
    assert not assert_agrees(bad_utf8, BATCH_WS)
    trailing = AvroEncoder().event(make_event(1)) + b"\x00"
    assert assert_agrees(trailing, EVENT_WS) is True
    assert outcome(trailing, EVENT_WS) == ("invalid_avro", "1 trailing bytes after the Avro datum")


def test_registry_variants_compile_and_agree() -> None:
    """Reordered fields and an extra field (a producer's own schema version)."""
    schema = event_schema()
    extra = {"name": "extra", "type": ["null", "string"], "default": None}
    schema["fields"] = [*reversed(schema["fields"]), extra]
    writer = prepare_writer_schema(77, schema)
    assert writer.reader is not None
    rng = random.Random(3)
    parsed = fastavro.parse_schema(
        {**copy.deepcopy(writer.parsed), "name": "io.govpipe.v1.AgentEventX"}
    )
    for _ in range(200):
        event = {**random_event(rng), "extra": rng.choice([None, "x"])}
        buf = io.BytesIO()
        buf.write(b"\x00" + struct.pack(">I", 77))
        fastavro.schemaless_writer(buf, parsed, event)
        assert assert_agrees(buf.getvalue(), writer)


@pytest.mark.parametrize(
    "field_type",
    [
        "int",
        "boolean",
        "bytes",
        "double",
        {"type": "enum", "name": "E", "symbols": ["A"]},
        {"type": "fixed", "name": "F", "size": 4},
        {"type": "array", "items": "null"},
    ],
)
def test_unsupported_types_left_to_fastavro(field_type: Any) -> None:
    schema = event_schema()
    schema["fields"].append({"name": "odd", "type": field_type})
    assert prepare_writer_schema(5, schema).reader is None
    assert compile_reader(fastavro.parse_schema(batch_schema())) is not None


def test_hostile_field_names_are_not_compiled() -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "a'}; x", "type": "string"}]}
    assert compile_reader(schema) is None
