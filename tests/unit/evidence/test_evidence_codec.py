"""The evidence topic's Avro: round trips, the registry subject, older writers, bad bytes."""

from __future__ import annotations

import copy
import struct
from typing import Any

import orjson
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from pipeline.codec import load_schema
from pipeline.errors import RejectedInput
from pipeline.evidence import (
    EvidenceThresholds,
    add_alerts,
    add_events,
    new_state,
    next_record,
    observe_watermark,
)
from pipeline.evidence.codec import (
    LOCAL_EVIDENCE_SCHEMA_ID,
    EvidenceCodec,
    record_key,
)
from tests.unit.evidence import _scenario as sc


def must_show_record() -> dict[str, Any]:
    state = new_state(sc.TASK)
    add_events(state, [*sc.events(), sc.late_revocation()])
    add_alerts(state, [sc.sp02_alert()])
    observe_watermark(state, sc.LATE_REVOCATION)
    record = next_record(state, EvidenceThresholds.defaults())
    assert record is not None
    return record


def test_local_round_trip_equals_the_record() -> None:
    record = must_show_record()
    codec = EvidenceCodec()
    value = codec.encode(record)
    assert value[0] == 0 and struct.unpack(">I", value[1:5])[0] == LOCAL_EVIDENCE_SCHEMA_ID
    assert codec.decode(value) == record
    assert record_key(record) == sc.TASK.encode()


def test_a_record_with_a_cross_task_parent_round_trips() -> None:
    record = must_show_record()
    record["parent"] = {"task_id": "task-parent", "event_id": "e-x"}
    codec = EvidenceCodec()
    assert codec.decode(codec.encode(record)) == record


def test_round_trip_through_a_registry_subject() -> None:
    client = SchemaRegistryClient.new_client({"url": "mock://evidence"})
    codec = EvidenceCodec(client=client)
    schema_id = codec.register()
    assert codec.subject == "governance.evidence.v1-value"
    assert client.get_latest_version("governance.evidence.v1-value").schema_id == schema_id
    value = codec.encode(must_show_record())
    assert struct.unpack(">I", value[1:5])[0] == schema_id
    assert EvidenceCodec(client=client).decode(value) == must_show_record()


def test_a_v1_writer_reads_with_v2_defaults() -> None:
    v1 = load_schema("history/evidence/v1.avsc")
    client = SchemaRegistryClient.new_client({"url": "mock://evidence-v1"})
    old = EvidenceCodec(client=client, writer_schema=v1, topic="old")
    record = must_show_record()
    older = copy.deepcopy(record)
    del older["pending"]
    del older["initiator"]["mode"]
    for actor in older["actors"]:
        del actor["mode"]
    got = EvidenceCodec(client=client).decode(old.encode(older))
    assert got["pending"] == []
    assert got["initiator"]["mode"] == "autonomous"
    assert [a["mode"] for a in got["actors"]] == ["autonomous", "autonomous"]
    assert got["verdicts"] == record["verdicts"]


def test_json_is_read_too() -> None:
    record = must_show_record()
    assert EvidenceCodec().decode(orjson.dumps(record)) == record


@pytest.mark.parametrize(
    "value,code",
    [
        (b"", "empty_record"),
        (b"\x00\x00\x00", "invalid_avro"),
        (b"\x00\x00\x00\x00\x63abc", "unknown_schema_id"),
        (b"\x00" + struct.pack(">I", LOCAL_EVIDENCE_SCHEMA_ID) + b"\xff\xff", "invalid_avro"),
        (b"[1, 2]", "invalid_json"),
        (b"{not json", "invalid_json"),
    ],
)
def test_bad_bytes_are_rejected_not_raised(value: bytes, code: str) -> None:
    with pytest.raises(RejectedInput) as info:
        EvidenceCodec().decode(value)
    assert info.value.code == code


def test_trailing_bytes_are_refused() -> None:
    value = EvidenceCodec().encode(must_show_record()) + b"x"
    with pytest.raises(RejectedInput):
        EvidenceCodec().decode(value)
