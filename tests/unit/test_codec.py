"""Decoding single events and batches in both encodings, and rejecting hostile bytes."""

from __future__ import annotations

import struct

import orjson
import pytest

from pipeline.codec import AvroEncoder, encode_json_batch
from pipeline.errors import RejectedInput
from pipeline.flow.schemas import SchemaResolver
from pipeline.flow.validate import Validator, validate_event
from tests.support.events import hostile_records, make_event


@pytest.fixture
def validator() -> Validator:
    return Validator(SchemaResolver(), 2 * 1024 * 1024 - 4096, 10_000)


def test_avro_single_and_batch_round_trip(validator: Validator) -> None:
    enc = AvroEncoder()
    events = [make_event(i) for i in range(5)]
    one = validator.validate(enc.event(events[0]))
    assert one.fmt == "avro" and not one.batch and not one.rejections
    assert one.events[0]["event_time"] == events[0]["event_time"]
    assert one.events[0]["attributes"] == events[0]["attributes"]
    many = validator.validate(enc.batch(events))
    assert many.batch and [e["event_id"] for e in many.events] == [e["event_id"] for e in events]


def test_json_single_and_batch(validator: Validator) -> None:
    events = [make_event(i) for i in range(3)]
    assert len(validator.validate(orjson.dumps(events[0])).events) == 1
    assert len(validator.validate(encode_json_batch(events)).events) == 3


@pytest.mark.parametrize(
    "stamp,expected",
    [
        ("2025-11-24T16:00:00Z", 1_764_000_000_000),
        ("2025-11-24T17:00:00+01:00", 1_764_000_000_000),
        ("2025-11-24T16:00:00", 1_764_000_000_000),
        (1_764_000_000_000, 1_764_000_000_000),
        ("1764000000000", 1_764_000_000_000),
    ],
)
def test_timestamps_iso_or_epoch_ms(stamp: object, expected: int) -> None:
    assert validate_event(make_event(0, event_time=stamp))["event_time"] == expected


@pytest.mark.parametrize("stamp", ["yesterday", True, 1_764_000_000, -5, "2025-13-01T00:00:00Z"])
def test_bad_timestamps_rejected(stamp: object) -> None:
    with pytest.raises(RejectedInput) as err:
        validate_event(make_event(0, event_time=stamp))
    assert err.value.code == "invalid_field"


def test_enums_normalised_and_checked() -> None:
    event = validate_event(make_event(0, policy_decision="ALLOW", sensitivity="High"))
    assert event["policy_decision"] == "allow" and event["sensitivity"] == "high"
    with pytest.raises(RejectedInput):
        validate_event(make_event(0, policy_decision="maybe"))


def test_every_hostile_kind_gets_its_code(validator: Validator) -> None:
    for code, value, _ in hostile_records(0):
        result = validator.validate(value)
        assert not result.events
        assert [r.code for r in result.rejections] == [code], code


def test_bad_event_in_batch_rejected_alone(validator: Validator) -> None:
    events = [make_event(i) for i in range(5)]
    bad = dict(events[2], event_type="nope")
    result = validator.validate(orjson.dumps([*events[:2], bad, *events[3:]]))
    assert len(result.events) == 4
    (rejection,) = result.rejections
    assert rejection.batch_index == 2 and rejection.code == "unknown_event_type"
    assert orjson.loads(rejection.payload)["event_type"] == "nope"


def test_messages_never_quote_values(validator: Validator) -> None:
    secret = "ghp_" + "A" * 36
    result = validator.validate(orjson.dumps(make_event(0, latency_ms=secret)))
    assert secret not in result.rejections[0].message


def test_avro_trailing_bytes_and_short_header(validator: Validator) -> None:
    enc = AvroEncoder()
    assert validator.validate(enc.event(make_event(0)) + b"xx").rejections[0].code == "invalid_avro"
    assert validator.validate(b"\x00\x00\x01").rejections[0].code == "invalid_avro"
    assert validator.validate(b"").rejections[0].code == "empty_record"
    assert validator.validate(None).rejections[0].code == "empty_record"


def test_batch_event_limit() -> None:
    small = Validator(SchemaResolver(), 10_000_000, 3)
    result = small.validate(encode_json_batch([make_event(i) for i in range(4)]))
    assert result.rejections[0].code == "batch_too_large"


def test_registry_ids_resolved_through_mock_registry() -> None:
    import asyncio

    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    from pipeline.codec import event_schema

    client = SchemaRegistryClient.new_client({"url": "mock://govpipe-test"})
    schema_id = client.register_schema(
        "agent.events.v1-value", Schema(orjson.dumps(event_schema()).decode(), "AVRO")
    )
    resolver = SchemaResolver(client=client)
    validator = Validator(resolver, 1_000_000, 100)
    value = b"\x00" + struct.pack(">I", schema_id) + AvroEncoder().event(make_event(1))[5:]
    ids = validator.schema_ids([value, b"\x00" + struct.pack(">I", 424242) + b"x"])
    asyncio.run(resolver.resolve(ids))
    assert validator.validate(value).events[0]["event_id"] == make_event(1)["event_id"]
    bad = b"\x00" + struct.pack(">I", 424242) + b"x"
    assert validator.validate(bad).rejections[0].code == "unknown_schema_id"
