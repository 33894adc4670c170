"""Read the metrics and alerts topics to the end into plain data (``ReportData``).

Topics are read with ``assign()`` on every partition from the oldest record, like
``govpipe tail``: no consumer group to join, nothing committed. "The end" is "until
quiet" (every partition at EOF and nothing new for ``idle_s``, or 5 x ``idle_s`` of
silence): Tansu's high watermark can lag what it acknowledged (docs/internals.md).

Everything after the read is pure: ``latest_metrics`` keeps the newest revision of
each metric key, ``latest_alerts`` one alert per ``alert_id`` (a repeat is an OCSF
Update of the same finding, not a new one). Bad records are counted, never raised.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from pipeline.commands._kafka import client_config
from pipeline.errors import GovpipeError, InfraError, RejectedInput
from pipeline.metrics.codec import MetricCodec
from pipeline.metrics.record import MetricRecord, record_key
from pipeline.settings import Settings
from pipeline.topicread import open_reader

DEFAULT_IDLE_S: Final = 2.0
#: A single alert larger than this is not an alert govpipe wrote; it is skipped.
MAX_ALERT_BYTES: Final = 256 * 1024


@dataclass(frozen=True, slots=True)
class Consumed:
    """One record as read from a topic (bytes untouched)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


class TopicReader:
    """Every record of ``topic`` from the beginning, until quiet (or ``max_seconds``).

    Iterate it once; afterwards ``truncated`` says whether ``max_seconds`` cut the
    read short, ``records`` how many were read. ``consumer`` is injectable (tests).
    """

    def __init__(
        self,
        settings: Settings,
        topic: str,
        *,
        idle_s: float = DEFAULT_IDLE_S,
        max_seconds: float | None = None,
        consumer: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.idle_s = idle_s
        self.max_seconds = max_seconds
        self.truncated = False
        self.records = 0
        self._consumer = consumer
        self._clock = clock

    def _open(self) -> tuple[Any, int]:
        if self._consumer is None:
            return open_reader(
                self.settings,
                self.topic,
                eof_events=True,
                extra={
                    **client_config(),
                    "fetch.max.bytes": 50 * 1024 * 1024,
                    "max.partition.fetch.bytes": 10 * 1024 * 1024,
                },
            )
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        consumer = self._consumer
        meta = consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
        if meta is None or meta.error is not None or not meta.partitions:
            consumer.close()
            raise GovpipeError(f"topic {self.topic} does not exist: run `govpipe topics create`")
        partitions = sorted(meta.partitions)
        consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in partitions])
        return consumer, len(partitions)

    def __iter__(self) -> Generator[Consumed, None, None]:
        from confluent_kafka import KafkaError, KafkaException

        try:
            consumer, partitions = self._open()
        except KafkaException as exc:
            raise InfraError(f"Kafka: {exc}") from None
        start = last = self._clock()
        at_end: set[int] = set()
        try:
            while True:
                for msg in consumer.consume(500, timeout=0.5):
                    error = msg.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            at_end.add(msg.partition())
                            continue
                        if error.fatal():
                            raise InfraError(f"Kafka: {error.str()}")
                        continue  # transient: librdkafka retries by itself
                    at_end.discard(msg.partition())
                    last = self._clock()
                    self.records += 1
                    yield Consumed(
                        self.topic,
                        int(msg.partition()),
                        int(msg.offset()),
                        msg.key(),
                        msg.value(),
                        tuple(msg.headers() or ()),
                    )
                now = self._clock()
                quiet = now - last
                if quiet >= self.idle_s and (len(at_end) >= partitions or quiet >= 5 * self.idle_s):
                    return
                if self.max_seconds is not None and now - start >= self.max_seconds:
                    self.truncated = True
                    return
        except KafkaException as exc:
            raise InfraError(f"Kafka: {exc}") from None
        finally:
            consumer.close()


# ---- pure: records -> report data ------------------------------------------------------


@dataclass(slots=True)
class ReportData:
    """What the report is built from: the newest metric revisions and distinct alerts."""

    metrics: list[MetricRecord] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    metric_records_read: int = 0
    alert_records_read: int = 0
    metrics_skipped: int = 0
    alerts_skipped: int = 0
    metrics_topic: str = ""
    alerts_topic: str = ""
    #: True when ``--max-seconds`` stopped a read before the topic was quiet.
    truncated: bool = False
    #: notes for the reader from collecting or scoping (shown under the header)
    notes: list[str] = field(default_factory=list)


def parse_alert(value: bytes | None) -> dict[str, Any] | None:
    """An alert object, or None for anything that is not one (counted as skipped)."""
    if not value or len(value) > MAX_ALERT_BYTES:
        return None
    try:
        alert = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(alert, dict) or not isinstance(alert.get("detector"), str):
        return None
    return alert


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value)


def latest_alerts(alerts: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One alert per ``alert_id``: the one with the highest ``count`` (then ``time``).

    Updates repeat a finding; they are not new findings. Alerts without an id are
    kept as they are (each one counts).
    """
    by_id: dict[str, dict[str, Any]] = {}
    anonymous: list[dict[str, Any]] = []
    for alert in alerts:
        uid = alert.get("alert_id")
        if not isinstance(uid, str) or not uid:
            anonymous.append(alert)
            continue
        seen = by_id.get(uid)
        rank = (_number(alert.get("count")), _number(alert.get("time")))
        if seen is None or rank >= (_number(seen.get("count")), _number(seen.get("time"))):
            by_id[uid] = alert
    return [*by_id.values(), *anonymous]


def latest_metrics(records: Iterable[MetricRecord]) -> list[MetricRecord]:
    """The newest revision of each (window, size, dimension, value), in window order."""
    newest: dict[bytes, MetricRecord] = {}
    for record in records:
        key = record_key(record)
        seen = newest.get(key)
        if seen is None or (record.revision, record.emitted_at) >= (seen.revision, seen.emitted_at):
            newest[key] = record
    return sorted(
        newest.values(),
        key=lambda r: (r.window_start, r.window_size_ms, r.dimension, r.dimension_value),
    )


def report_data(
    metric_values: Iterable[bytes | None],
    alert_values: Iterable[bytes | None],
    *,
    codec: MetricCodec | None = None,
    metrics_topic: str = "",
    alerts_topic: str = "",
) -> ReportData:
    """Decode raw topic values into ``ReportData`` (pure apart from the codec's registry)."""
    codec = codec or MetricCodec()
    data = ReportData(metrics_topic=metrics_topic, alerts_topic=alerts_topic)
    decoded: list[MetricRecord] = []
    for value in metric_values:
        data.metric_records_read += 1
        try:
            decoded.append(codec.decode(value))
        except (RejectedInput, InfraError):
            data.metrics_skipped += 1
    parsed: list[dict[str, Any]] = []
    for value in alert_values:
        data.alert_records_read += 1
        alert = parse_alert(value)
        if alert is None:
            data.alerts_skipped += 1
        else:
            parsed.append(alert)
    data.metrics = latest_metrics(decoded)
    data.alerts = latest_alerts(parsed)
    return data


# ---- I/O ---------------------------------------------------------------------------------


def collect(
    settings: Settings,
    *,
    idle_s: float = DEFAULT_IDLE_S,
    max_seconds: float | None = None,
) -> ReportData:
    """Read both output topics of ``settings`` to the end and decode them.

    ``max_seconds`` bounds each topic's read; a cut-short read sets ``truncated``.
    """
    metrics = TopicReader(settings, settings.topic_metrics, idle_s=idle_s, max_seconds=max_seconds)
    alerts = TopicReader(settings, settings.topic_alerts, idle_s=idle_s, max_seconds=max_seconds)
    data = report_data(  # generators: raw bytes are decoded as they arrive, not kept
        (r.value for r in metrics),
        (r.value for r in alerts),
        codec=MetricCodec.from_settings(settings),
        metrics_topic=settings.topic_metrics,
        alerts_topic=settings.topic_alerts,
    )
    data.truncated = metrics.truncated or alerts.truncated
    return data
