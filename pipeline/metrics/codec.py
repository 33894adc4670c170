"""``governance.metrics.v1`` values: Confluent-wire Avro (the contract) or JSON.

Avro is written with the local schema id, or with the id registered under the
subject ``{topic}-value`` when a Schema Registry is configured, so warehouse sinks
(Kafka Connect, ksqlDB, Flink) can fetch the schema by id. ``decode`` takes either
format (first byte 0x00 = Avro) and resolves older or newer writer schemas against
the current one (Avro schema resolution: defaults fill fields a writer lacked).
Timestamps stay epoch-ms ints: logical types are stripped for the codec only, the
bytes are the same.
"""

from __future__ import annotations

import copy
import io
import json
import struct
from dataclasses import fields
from typing import Any, Final, Literal

import fastavro
import orjson

from pipeline.codec import MAGIC, load_schema
from pipeline.errors import InfraError, RejectedInput
from pipeline.metrics.record import DIMENSION_SYMBOLS, MetricRecord

#: Local catalogue id of the metric schema (events use 1 and 2), used without a registry.
LOCAL_METRIC_SCHEMA_ID: Final = 10
METRIC_RECORD: Final = "io.govpipe.v1.GovernanceMetric"
DEFAULT_TOPIC: Final = "governance.metrics.v1"
_REQUIRED: Final = ("window_start", "window_size_ms", "dimension", "dimension_value")

MetricFormat = Literal["avro", "json"]


def metric_schema() -> dict[str, Any]:
    """``schemas/metric.avsc`` as JSON (with logical types: what registries get)."""
    return load_schema("metric.avsc")


def _strip_logical(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_logical(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_strip_logical(s) for s in schema]
    return schema


def _parse(schema: dict[str, Any]) -> Any:
    return fastavro.parse_schema(_strip_logical(copy.deepcopy(schema)))


def _datum(record: MetricRecord) -> dict[str, Any]:
    datum = record.to_dict()
    if datum["dimension"] not in DIMENSION_SYMBOLS:
        datum["dimension"] = "unknown"
    return datum


class MetricCodec:
    """Encode ``MetricRecord`` as Avro or JSON; decode both.

    ``client`` is a ``confluent_kafka.schema_registry.SchemaRegistryClient`` (or a
    ``mock://`` one in tests); ``writer_schema`` overrides the schema written (tests
    of older / newer versions). Registry calls are synchronous: call ``register()``
    once at start (off the event loop), not per record.
    """

    def __init__(
        self,
        fmt: MetricFormat = "avro",
        *,
        topic: str = DEFAULT_TOPIC,
        registry_url: str | None = None,
        client: Any = None,
        writer_schema: dict[str, Any] | None = None,
    ) -> None:
        self.fmt = fmt
        self.subject = f"{topic}-value"
        self._client = client
        if client is None and registry_url:
            from confluent_kafka.schema_registry import SchemaRegistryClient

            self._client = SchemaRegistryClient.new_client({"url": registry_url})
        self._reader = _parse(metric_schema())
        self._writer_schema = writer_schema or metric_schema()
        self._writer = _parse(self._writer_schema) if writer_schema else self._reader
        self._writers: dict[int, Any] = {}
        self._schema_id: int | None = None
        if self._client is None:
            self._schema_id = LOCAL_METRIC_SCHEMA_ID
            self._writers[LOCAL_METRIC_SCHEMA_ID] = self._writer

    @classmethod
    def from_settings(cls, settings: Any, fmt: MetricFormat = "avro") -> MetricCodec:
        return cls(fmt, topic=settings.topic_metrics, registry_url=settings.schema_registry_url)

    @property
    def uses_registry(self) -> bool:
        return self._client is not None

    def register(self) -> int:
        """The writer schema's id: local, or registered under ``{topic}-value``."""
        if self._schema_id is not None:
            return self._schema_id
        from confluent_kafka.schema_registry import Schema
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            schema_id = int(
                self._client.register_schema(
                    self.subject, Schema(json.dumps(self._writer_schema), "AVRO")
                )
            )
        except SchemaRegistryError as exc:
            raise InfraError(
                f"schema registry refused {self.subject} ({exc.http_status_code}): "
                "is the change backward compatible?"
            ) from None
        except Exception as exc:
            raise InfraError(f"schema registry unreachable ({type(exc).__name__})") from None
        self._writers[schema_id] = self._writer
        self._schema_id = schema_id
        return schema_id

    # ---- encode ------------------------------------------------------------------

    def encode(self, record: MetricRecord) -> bytes:
        if self.fmt == "json":
            return orjson.dumps(record.to_dict())
        buf = io.BytesIO()
        buf.write(struct.pack(">bI", MAGIC, self.register()))
        fastavro.schemaless_writer(buf, self._writer, _datum(record))
        return buf.getvalue()

    # ---- decode ------------------------------------------------------------------

    def decode(self, value: bytes | None) -> MetricRecord:
        """Either format; anything else raises ``RejectedInput`` (never a crash)."""
        if not value:
            raise RejectedInput("empty_record", "record has no value")
        if value[0] == MAGIC:
            return self._decode_avro(value)
        return self._decode_json(value)

    def _writer_for(self, schema_id: int) -> Any:
        found = self._writers.get(schema_id)
        if found is not None:
            return found
        if self._client is None:
            raise RejectedInput("unknown_schema_id", f"schema id {schema_id} is not local")
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            schema = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise RejectedInput(
                    "unknown_schema_id", f"schema id {schema_id} is not in the registry"
                ) from None
            raise InfraError(f"schema registry error {exc.http_status_code}") from None
        except Exception as exc:
            raise InfraError(f"schema registry unreachable ({type(exc).__name__})") from None
        try:
            parsed_json = json.loads(schema.schema_str)
            name = parsed_json.get("name", "")
            full = name if "." in name else f"{parsed_json.get('namespace')}.{name}"
            if full != METRIC_RECORD:
                raise RejectedInput("unsupported_schema", f"schema id {schema_id} is {full}")
            parsed = _parse(parsed_json)
        except RejectedInput:
            raise
        except Exception as exc:
            raise RejectedInput(
                "unsupported_schema", f"schema id {schema_id} does not parse ({type(exc).__name__})"
            ) from None
        self._writers[schema_id] = parsed
        return parsed

    def _decode_avro(self, value: bytes) -> MetricRecord:
        if len(value) < 5:
            raise RejectedInput("invalid_avro", "Confluent wire header is truncated")
        (schema_id,) = struct.unpack_from(">I", value, 1)
        writer = self._writer_for(schema_id)
        buf = io.BytesIO(value)
        buf.seek(5)
        try:
            reader = None if writer is self._reader else self._reader
            datum: Any = fastavro.schemaless_reader(buf, writer, reader)
        except Exception as exc:
            raise RejectedInput(
                "invalid_avro", f"Avro does not decode: {type(exc).__name__}"
            ) from None
        if buf.tell() != len(value):
            raise RejectedInput("invalid_avro", "trailing bytes after the Avro datum")
        return _record(datum)

    def _decode_json(self, value: bytes) -> MetricRecord:
        try:
            datum = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise RejectedInput("invalid_json", f"not JSON: {exc.msg}") from None
        if not isinstance(datum, dict):
            raise RejectedInput("invalid_json", f"JSON {type(datum).__name__} is not a metric")
        return _record(datum)


_NAMES: Final = frozenset(f.name for f in fields(MetricRecord))


def _record(datum: dict[str, Any]) -> MetricRecord:
    missing = [name for name in _REQUIRED if name not in datum]
    if missing:
        raise RejectedInput("missing_field", f"metric lacks {', '.join(missing)}")
    if not all(type(datum[n]) is int for n in ("window_start", "window_size_ms")) or not all(
        isinstance(datum[n], str) for n in ("dimension", "dimension_value")
    ):
        raise RejectedInput("invalid_field", "metric window or dimension has the wrong type")
    try:
        data = {k: v for k, v in datum.items() if k in _NAMES}
        data.setdefault("window_end", int(data["window_start"]) + int(data["window_size_ms"]))
        return MetricRecord(**data)
    except (TypeError, ValueError) as exc:
        raise RejectedInput("invalid_field", f"metric does not fit: {type(exc).__name__}") from None
