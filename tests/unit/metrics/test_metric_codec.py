"""MetricRecord on the wire: Confluent Avro (local id or registry id) and JSON."""

from __future__ import annotations

import copy
import struct

import orjson
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from pipeline.errors import RejectedInput
from pipeline.metrics.codec import LOCAL_METRIC_SCHEMA_ID, MetricCodec, metric_schema
from pipeline.metrics.deltas import AlertRaised, ApprovalDecided, outcome_deltas
from pipeline.metrics.record import MetricRecord
from pipeline.metrics.windows import MetricWindows
from pipeline.settings import load_settings
from tests.unit.metrics.factory import BASE, HOUR, MIN, action_deltas, random_actions

WINDOW = {"window_start": 1, "window_size_ms": 1, "dimension": "global", "dimension_value": "all"}


@pytest.fixture
def records() -> list[MetricRecord]:
    w = MetricWindows([MIN], 0)
    w.add_all(action_deltas(random_actions(300), [MIN]))
    w.add_all(
        outcome_deltas([AlertRaised(BASE, "SP-01"), ApprovalDecided(BASE, 0.0, False)], [MIN])
    )
    out = w.advance(BASE + HOUR)
    assert any(r.median_review_seconds == 0.0 for r in out)
    assert any(r.successful_completion_rate is None for r in out)
    return out


def test_avro_round_trip_with_the_local_id(records) -> None:
    codec = MetricCodec("avro")
    for record in records:
        value = codec.encode(record)
        assert value[0] == 0 and struct.unpack(">I", value[1:5])[0] == LOCAL_METRIC_SCHEMA_ID
        assert codec.decode(value) == record


def test_avro_round_trip_through_a_registry(records) -> None:
    client = SchemaRegistryClient.new_client({"url": "mock://metrics"})
    codec = MetricCodec("avro", topic="governance.metrics.v1", client=client)
    schema_id = codec.register()
    assert client.get_latest_version("governance.metrics.v1-value").schema_id == schema_id
    value = codec.encode(records[0])
    assert struct.unpack(">I", value[1:5])[0] == schema_id
    reader = MetricCodec("avro", client=client)  # another process: fetches the id
    assert reader.decode(value) == records[0]


def test_registry_url_builds_a_client(records) -> None:
    codec = MetricCodec.from_settings(load_settings(schema_registry_url="mock://from-settings"))
    assert codec.uses_registry
    assert codec.decode(codec.encode(records[0])) == records[0]


def test_json_round_trip(records) -> None:
    codec = MetricCodec("json")
    for record in records:
        value = codec.encode(record)
        assert orjson.loads(value)["dimension"] == record.dimension
        assert codec.decode(value) == record
    assert MetricCodec("avro").decode(codec.encode(records[0])) == records[0]  # either format


def test_data_from_an_older_writer_gets_defaults() -> None:
    old = copy.deepcopy(metric_schema())
    old["fields"] = [f for f in old["fields"] if f["name"] not in ("late_events", "revision")]
    client = SchemaRegistryClient.new_client({"url": "mock://old"})
    old_codec = MetricCodec("avro", client=client, writer_schema=old, topic="old")
    record = MetricRecord(BASE, BASE + MIN, MIN, "team", "sales", late_events=7, revision=3)
    value = old_codec.encode(record)
    got = MetricCodec("avro", client=client).decode(value)
    assert (got.late_events, got.revision, got.dimension_value) == (0, 0, "sales")


def test_unknown_enum_symbol_from_a_newer_writer_reads_as_unknown() -> None:
    new = copy.deepcopy(metric_schema())
    dim = next(f for f in new["fields"] if f["name"] == "dimension")
    dim["type"]["symbols"].insert(0, "environment")
    client = SchemaRegistryClient.new_client({"url": "mock://new"})
    writer = MetricCodec("avro", client=client, writer_schema=new, topic="new")
    value = writer.encode(MetricRecord(BASE, BASE + MIN, MIN, "environment", "prod"))
    assert MetricCodec("avro", client=client).decode(value).dimension == "unknown"


def test_a_dimension_the_schema_lacks_is_written_as_unknown() -> None:
    codec = MetricCodec("avro")
    value = codec.encode(MetricRecord(BASE, BASE + MIN, MIN, "galaxy", "x"))
    assert codec.decode(value).dimension == "unknown"


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (b"", "empty_record"),
        (b"\x00\x00", "invalid_avro"),
        (b"\x00" + struct.pack(">I", 999) + b"\x02", "unknown_schema_id"),
        (b"\x00" + struct.pack(">I", LOCAL_METRIC_SCHEMA_ID) + b"\xff" * 3, "invalid_avro"),
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        (b'{"window_start": 1}', "missing_field"),
        (orjson.dumps({**WINDOW, "window_start": "x"}), "invalid_field"),
        (orjson.dumps({**WINDOW, "tasks_completed": 1, "bogus": 2}), None),
    ],
)
def test_bad_values_are_rejected_not_crashes(value, code) -> None:
    codec = MetricCodec("avro")
    if code is None:
        assert codec.decode(value).tasks_completed == 1  # unknown fields are ignored
        return
    with pytest.raises(RejectedInput) as exc:
        codec.decode(value)
    assert exc.value.code == code


def test_trailing_bytes_are_rejected(records) -> None:
    codec = MetricCodec("avro")
    with pytest.raises(RejectedInput, match="trailing"):
        codec.decode(codec.encode(records[0]) + b"\x00")


def test_registry_without_the_id_is_a_rejection() -> None:
    codec = MetricCodec("avro", client=SchemaRegistryClient.new_client({"url": "mock://empty"}))
    with pytest.raises(RejectedInput) as exc:
        codec.decode(b"\x00" + struct.pack(">I", 4242) + b"\x00")
    assert exc.value.code == "unknown_schema_id"


def test_mode_dimension_round_trips_and_a_v1_reader_sees_unknown() -> None:
    import io
    import json

    import fastavro

    from pipeline.codec import schemas_dir

    codec = MetricCodec("avro")
    record = MetricRecord(BASE, BASE + MIN, MIN, "mode", "reporting", actions_total=3)
    value = codec.encode(record)
    assert codec.decode(value) == record
    v1 = json.loads((schemas_dir() / "history" / "metric" / "v1.avsc").read_text())

    def plain(schema: object) -> object:  # the codec strips logical types likewise
        if isinstance(schema, dict):
            return {k: plain(v) for k, v in schema.items() if k != "logicalType"}
        return [plain(s) for s in schema] if isinstance(schema, list) else schema

    old = fastavro.schemaless_reader(
        io.BytesIO(value[5:]),
        fastavro.parse_schema(plain(metric_schema())),
        fastavro.parse_schema(plain(v1)),
    )
    assert isinstance(old, dict)
    assert (old["dimension"], old["dimension_value"]) == ("unknown", "reporting")
