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

from dataclasses import fields
from typing import Any, Final, Literal

import orjson

from pipeline.avro_topic import AvroTopic
from pipeline.codec import MAGIC, load_schema
from pipeline.errors import RejectedInput
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
        self._avro = AvroTopic(
            metric_schema(),
            local_id=LOCAL_METRIC_SCHEMA_ID,
            topic=topic,
            registry_url=registry_url,
            client=client,
            writer_schema=writer_schema,
        )
        self.subject = self._avro.subject

    @classmethod
    def from_settings(cls, settings: Any, fmt: MetricFormat = "avro") -> MetricCodec:
        return cls(fmt, topic=settings.topic_metrics, registry_url=settings.schema_registry_url)

    @property
    def uses_registry(self) -> bool:
        return self._avro.uses_registry

    def register(self) -> int:
        """The writer schema's id: local, or registered under ``{topic}-value``."""
        return self._avro.register()

    # ---- encode ------------------------------------------------------------------

    def encode(self, record: MetricRecord) -> bytes:
        if self.fmt == "json":
            return orjson.dumps(record.to_dict())
        return self._avro.encode(_datum(record))

    # ---- decode ------------------------------------------------------------------

    def decode(self, value: bytes | None) -> MetricRecord:
        """Either format; anything else raises ``RejectedInput`` (never a crash)."""
        if not value:
            raise RejectedInput("empty_record", "record has no value")
        if value[0] == MAGIC:
            return self._decode_avro(value)
        return self._decode_json(value)

    def _decode_avro(self, value: bytes) -> MetricRecord:
        return _record(self._avro.decode(value))

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
