"""The publishing SDK and `govpipe publish`, without a broker (a fake producer at the
network seam), plus `govpipe simulate --out`."""

from __future__ import annotations

import argparse
import logging
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from confluent_kafka import KafkaError, KafkaException

from pipeline.cli import main
from pipeline.codec import decode_avro, decode_json, local_catalogue
from pipeline.commands.publish import validate_lines
from pipeline.records import AgentEvent
from pipeline.sdk import InvalidEvent, Publisher, PublishError
from pipeline.settings import load_settings
from pipeline.simulate import Simulator

START = 1_780_000_000_000


class FakeProducer:
    """Just enough of confluent_kafka.Producer: queues records, 'delivers' on poll/flush
    with the outcome ``behaviour(conf)`` decides."""

    def __init__(self, conf: dict[str, Any], behaviour: Any) -> None:
        self.conf = conf
        self.behaviour = behaviour
        self.queue: list[tuple[str, bytes, bytes | None, Any]] = []
        self.delivered: list[tuple[bytes, bytes | None]] = []
        self.fatal = False

    def produce(self, topic: str, value: bytes, key: bytes | None = None, **kw: Any) -> None:
        if self.fatal:
            raise KafkaException(KafkaError(KafkaError._FATAL, "producer is fenced", fatal=True))
        self.queue.append((topic, value, key, kw["on_delivery"]))

    def _serve(self) -> None:
        while self.queue:
            _, value, key, cb = self.queue.pop(0)
            err = self.behaviour(self.conf)
            if err is not None and err.fatal() and not self.fatal:
                self.fatal = True
                self.conf["error_cb"](err)
            cb(err, None)
            if err is None:
                self.delivered.append((value, key))

    def poll(self, timeout: float = 0.0) -> int:
        self._serve()
        return 0

    def flush(self, timeout: float = 0.0) -> int:
        self._serve()
        return len(self.queue)

    def purge(self, *args: Any, **kwargs: Any) -> None:
        self.queue.clear()


class Factory:
    def __init__(self, behaviour: Any = lambda conf: None) -> None:
        self.behaviour = behaviour
        self.producers: list[FakeProducer] = []

    def __call__(self, conf: dict[str, Any]) -> FakeProducer:
        p = FakeProducer(conf, self.behaviour)
        self.producers.append(p)
        return p

    @property
    def delivered(self) -> list[tuple[bytes, bytes | None]]:
        return [d for p in self.producers for d in p.delivered]


@pytest.fixture
def settings() -> Any:
    return load_settings(kafka_bootstrap_servers="127.0.0.1:1")


@pytest.fixture
def events() -> list[dict[str, Any]]:
    return Simulator(3, start_ms=START, rate=50.0).events(40)


def decoded(value: bytes) -> list[dict[str, Any]]:
    if value[0] == 0:
        (schema_id,) = struct.unpack_from(">I", value, 1)
        return decode_avro(value, local_catalogue()[schema_id]).events
    return decode_json(value).events


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return AgentEvent.model_validate(a) == AgentEvent.model_validate(b)


@pytest.mark.parametrize("fmt", ["avro", "json"])
def test_batches_by_size_and_round_trips(settings: Any, events: Any, fmt: str) -> None:
    factory = Factory()
    with Publisher(
        settings, fmt=fmt, batch_max_events=16, batch_max_ms=60_000, producer_factory=factory
    ) as pub:
        for e in events:
            pub.publish(e)
        assert pub.records_sent == 2 and pub.pending == 8
    sent = factory.delivered
    assert [len(decoded(v)) for v, _ in sent] == [16, 16, 8]
    out = [e for v, _ in sent for e in decoded(v)]
    assert all(same(a, b) for a, b in zip(out, events, strict=True))
    for value, key in sent:
        first = decoded(value)[0]
        assert key == (first.get("identity_id") or first.get("task_id")).encode()


def test_batch_age_is_checked_by_poll(settings: Any, events: Any) -> None:
    factory = Factory()
    pub = Publisher(settings, batch_max_events=1000, batch_max_ms=1, producer_factory=factory)
    pub.publish(events[0])
    pub.poll()
    assert pub.records_sent == 0 or pub.pending == 0
    time.sleep(0.005)
    pub.poll()
    assert pub.pending == 0 and pub.records_sent == 1
    pub.flush()
    assert len(factory.delivered) == 1


def test_single_and_raw_records(settings: Any, events: Any) -> None:
    factory = Factory()
    with Publisher(settings, fmt="avro", producer_factory=factory) as pub:
        pub.publish_single(events[0])
        pub.publish_raw(b"not json at all", b"k")
    (single, _), (raw, key) = factory.delivered
    assert struct.unpack_from(">I", single, 1)[0] == 1  # the single-event schema id
    assert same(decoded(single)[0], events[0])
    assert raw == b"not json at all" and key == b"k"


def test_invalid_events_are_refused_without_values(settings: Any, events: Any) -> None:
    pub = Publisher(settings, producer_factory=Factory())
    bad = dict(events[0], event_time="sk-live-abcdef1234567890", risk="extreme")
    bad.pop("platform")
    with pytest.raises(InvalidEvent) as info:
        pub.publish(bad)
    fields = {f for f, _ in info.value.problems}
    assert {"event_time", "risk", "platform"} <= fields
    assert "sk-live-abcdef" not in str(info.value)
    with pytest.raises(InvalidEvent):
        pub.publish(["not", "a", "mapping"])  # type: ignore[arg-type]
    assert pub.pending == 0


def test_large_batches_are_split_under_the_record_limit(settings: Any, events: Any) -> None:
    factory = Factory()
    with Publisher(
        settings, batch_max_events=40, batch_max_bytes=4000, producer_factory=factory
    ) as pub:
        pub.publish_many(events)
    sizes = [len(v) for v, _ in factory.delivered]
    assert len(sizes) > 1 and max(sizes) <= 4000
    assert sum(len(decoded(v)) for v, _ in factory.delivered) == len(events)


def test_producer_config(settings: Any) -> None:
    factory = Factory()
    Publisher(settings, producer_factory=factory, compression="zstd", config={"linger.ms": 7})
    conf = factory.producers[0].conf
    assert conf["bootstrap.servers"] == "127.0.0.1:1"
    assert conf["enable.idempotence"] is True and conf["acks"] == "all"
    assert conf["compression.type"] == "zstd" and conf["linger.ms"] == 7
    assert conf["message.max.bytes"] >= 8 * 1024 * 1024


def test_delivery_errors_are_raised_on_flush(settings: Any, events: Any) -> None:
    def timeout(conf: dict[str, Any]) -> KafkaError:
        return KafkaError(KafkaError._MSG_TIMED_OUT, "Local: Message timed out")

    pub = Publisher(settings, batch_max_events=10, producer_factory=Factory(timeout))
    pub.publish_many(events)
    with pytest.raises(PublishError, match="4 record"):
        pub.flush()
    assert pub.records_failed == 4


def refuses_idempotence(conf: dict[str, Any]) -> KafkaError | None:
    if conf["enable.idempotence"]:
        return KafkaError(
            KafkaError.CLUSTER_AUTHORIZATION_FAILED, "InitProducerId refused", fatal=True
        )
    return None


def test_auto_idempotence_falls_back_once_and_loses_nothing(
    settings: Any, events: Any, caplog: pytest.LogCaptureFixture
) -> None:
    factory = Factory(refuses_idempotence)
    with caplog.at_level(logging.WARNING, logger="pipeline.sdk"):
        with Publisher(settings, batch_max_events=10, producer_factory=factory) as pub:
            pub.publish_many(events)
            pub.publish_single(events[0])
    assert [p.conf["enable.idempotence"] for p in factory.producers] == [True, False]
    assert factory.producers[0].delivered == []
    out = [e["event_id"] for v, _ in factory.delivered for e in decoded(v)]
    assert sorted(out) == sorted([e["event_id"] for e in events] + [events[0]["event_id"]])
    warnings = [r for r in caplog.records if "idempotent" in r.getMessage()]
    assert len(warnings) == 1
    assert pub.records_sent == 5 and pub.events_sent == 41


def test_explicit_idempotence_does_not_fall_back(settings: Any, events: Any) -> None:
    factory = Factory(refuses_idempotence)
    pub = Publisher(settings, idempotence=True, batch_max_events=10, producer_factory=factory)
    with pytest.raises(PublishError):
        pub.publish_many(events)
        pub.flush()
    assert len(factory.producers) == 1


def test_unsupported_compression_falls_back(settings: Any, events: Any) -> None:
    def no_lz4(conf: dict[str, Any]) -> KafkaError | None:
        if conf["compression.type"] != "none":
            return KafkaError(KafkaError.UNSUPPORTED_COMPRESSION_TYPE, "lz4 not supported")
        return None

    factory = Factory(no_lz4)
    with Publisher(
        settings, compression="lz4", batch_max_events=10, producer_factory=factory
    ) as pub:
        pub.publish_many(events)
    assert [p.conf["compression.type"] for p in factory.producers] == ["lz4", "none"]
    assert sum(len(decoded(v)) for v, _ in factory.delivered) == len(events)


def test_schema_registry_ids_are_used(events: Any) -> None:
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    settings = load_settings(
        kafka_bootstrap_servers="127.0.0.1:1", schema_registry_url="mock://sdk-test"
    )
    client = SchemaRegistryClient.new_client({"url": "mock://sdk-test-2"})
    client.register_schema("other-value", Schema('{"type": "string"}', "AVRO"))  # shifts ids
    factory = Factory()
    with Publisher(settings, registry_client=client, producer_factory=factory) as pub:
        pub.publish_many(events[:3])
        pub.publish_single(events[3])
    (single, _), (batch, _) = factory.delivered  # the batch waits for flush()
    batch_id = struct.unpack_from(">I", batch, 1)[0]
    event_id = struct.unpack_from(">I", single, 1)[0]
    assert (event_id, batch_id) != (1, 2)  # not the local catalogue's ids
    assert "AgentEventBatch" in client.get_schema(batch_id).schema_str
    assert '"AgentEvent"' in client.get_schema(event_id).schema_str
    # the URL alone is enough (mock:// makes an in-memory registry)
    Publisher(settings, producer_factory=Factory())


# ---- govpipe publish -----------------------------------------------------------------------


def test_validate_lines_reports_line_numbers_fields_never_values(events: Any) -> None:
    good = orjson.dumps(events[0])
    lines = [
        good,
        b"",
        b'{"event_id": "x", "event_type": "action"',  # line 3: truncated
        b"[1, 2]",  # line 4: not an object
        orjson.dumps(dict(events[1], event_type="agent.teleported", latency_ms="hunter2")),
        orjson.dumps({k: v for k, v in events[2].items() if k != "event_id"}),
        good,
    ]
    report = validate_lines(lines)
    assert report.valid == 2 and report.blank == 1
    assert [p.line for p in report.bad] == [3, 4, 5, 6]
    text = "\n".join(str(p) for p in report.bad)
    assert "line 3: truncated JSON (unexpected end of input at column 41)" in text
    assert "line 4: expected a JSON object, got list" in text
    assert "line 5: event_type:" in text and "latency_ms:" in text
    assert "line 6: event_id:" in text
    assert "hunter2" not in text and "agent.teleported" not in text


class RecordingPublisher:
    instances: list[RecordingPublisher] = []

    def __init__(self, settings: Any, **kw: Any) -> None:
        self.kw = kw
        self.sent: list[dict[str, Any]] = []
        self.records_sent = 0
        RecordingPublisher.instances.append(self)

    def publish(self, event: dict[str, Any]) -> None:
        self.sent.append(event)

    publish_single = publish

    def flush(self, timeout: float = 30.0) -> None:
        self.records_sent = len(self.sent)

    def __enter__(self) -> RecordingPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[RecordingPublisher]]:
    import pipeline.sdk

    RecordingPublisher.instances = []
    import pipeline.commands._kafka

    monkeypatch.setattr(pipeline.sdk, "Publisher", RecordingPublisher)
    monkeypatch.setattr(pipeline.commands._kafka, "require_broker", lambda *a, **k: None)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    from pipeline.settings import get_settings

    get_settings.cache_clear()
    yield RecordingPublisher
    get_settings.cache_clear()


def test_publish_command_sends_nothing_if_a_line_is_bad(
    tmp_path: Path, events: Any, recording: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join([orjson.dumps(events[0]), b"{oops", orjson.dumps(events[1])]))
    assert main(["publish", str(path)]) == 1
    assert recording.instances == []
    err = capsys.readouterr().err
    assert "line 2: not JSON (" in err and "nothing was sent" in err

    assert main(["publish", str(path), "--skip-invalid", "--format", "json"]) == 0
    [pub] = recording.instances
    assert [e["event_id"] for e in pub.sent] == [events[0]["event_id"], events[1]["event_id"]]
    assert pub.kw["fmt"] == "json"
    assert "published 2 events" in capsys.readouterr().err


def test_publish_command_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["publish", "/nonexistent/events.jsonl"]) == 2
    assert "cannot read" in capsys.readouterr().err


# ---- govpipe simulate --out ----------------------------------------------------------------


def test_simulate_out_writes_valid_lines_dirt_and_registry(tmp_path: Path) -> None:
    out, reg = tmp_path / "sim.jsonl", tmp_path / "ids.yaml"
    argv = [
        "simulate",
        "--out",
        str(out),
        "--count",
        "3000",
        "--seed",
        "5",
        "--start",
        "2026-06-01T00:00:00Z",
        "--registry-out",
        str(reg),
        "--violation-rate",
        "0.01",
    ]
    assert main(argv) == 0
    first = out.read_bytes()
    report = validate_lines(first.splitlines())
    assert report.bad == [] and report.valid >= 3000
    injected = [orjson.loads(x) for x in first.splitlines() if b"sim.injected" in x]
    assert injected
    assert yaml.safe_load(reg.read_text())["identities"]
    assert main(argv) == 0
    assert out.read_bytes() == first  # deterministic for seed and start

    assert main([*argv, "--dirty-rate", "0.05"]) == 0
    report = validate_lines(out.read_bytes().splitlines())
    assert report.valid == len(first.splitlines())
    assert 0.02 * report.valid < len(report.bad) < 0.1 * report.valid


def test_simulate_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--out", "-", "--violations", "ZZ-01=0.1"]) == 2
    assert main(["simulate", "--out", "-", "--violation-rate", "0.5"]) == 2
    assert main(["simulate", "--out", "-", "--rate", "0"]) == 2
    assert "add up" in capsys.readouterr().err


def test_commands_are_registered() -> None:
    from pipeline.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["simulate"])
    assert isinstance(args, argparse.Namespace) and args.rate == 200.0 and args.seed == 7
    args = parser.parse_args(["publish", "-"])
    assert args.file == "-" and args.fmt == "avro"
