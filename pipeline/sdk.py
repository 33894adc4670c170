"""Publishing SDK for platforms: validated, batched events onto ``agent.events.v1``.

    with Publisher(settings) as pub:
        pub.publish({"event_id": ..., "event_type": "action", ...})

Every event is validated with the contract model before it is buffered, so the
SDK never sends bad data (``InvalidEvent`` names the fields, never the values).
Events are batched into one record (Avro ``AgentEventBatch`` or a JSON array)
when the batch is full or older than ``batch_max_ms``; delivery errors are
collected and raised by ``flush()``, never dropped.

Idempotence: with ``idempotence="auto"`` the producer starts idempotent and, if
the very first deliveries fail with a fatal or "not supported" error (some
Kafka-compatible brokers refuse InitProducerId), it is rebuilt without
idempotence and the unconfirmed records are sent again, with one warning. The
same fallback drops an unsupported compression codec. Duplicates from retries
are harmless downstream: the pipeline deduplicates by ``event_id``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Literal, Protocol, cast

from pydantic import ValidationError

from pipeline.codec import (
    BATCH_RECORD,
    EVENT_RECORD,
    AvroEncoder,
    batch_schema,
    encode_json,
    encode_json_batch,
    event_schema,
)
from pipeline.errors import ConfigError, GovpipeError, InfraError
from pipeline.records import AgentEvent
from pipeline.settings import Settings
from pipeline.topics import MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

Format = Literal["avro", "json"]
Idempotence = bool | Literal["auto"]


class InvalidEvent(GovpipeError, ValueError):
    """An event that does not satisfy the input contract; ``problems`` lists
    ``(field, message)`` pairs (never the offending values)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("invalid event: " + "; ".join(f"{f}: {m}" for f, m in problems))


class PublishError(InfraError):
    """Records that the broker did not acknowledge (raised by ``flush``)."""


class ProducerLike(Protocol):
    """The part of ``confluent_kafka.Producer`` the SDK uses (a seam for tests)."""

    def produce(self, topic: str, value: bytes, key: bytes | None = ..., **kwargs: Any) -> None: ...

    def poll(self, timeout: float = ...) -> int: ...

    def flush(self, timeout: float = ...) -> int: ...

    def purge(self, *args: Any, **kwargs: Any) -> None: ...


ProducerFactory = Callable[[dict[str, Any]], ProducerLike]


def validation_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """(field path, message) for each error of a pydantic ValidationError, without inputs."""
    out = []
    for err in exc.errors(include_input=False, include_url=False):
        path = ".".join(str(p) for p in err["loc"]) or "event"
        out.append((path, err["msg"]))
    return out


def validate_event(event: AgentEvent | Mapping[str, Any]) -> AgentEvent:
    """The event as the contract model, or ``InvalidEvent``."""
    if isinstance(event, AgentEvent):
        return event
    if not isinstance(event, Mapping):
        raise InvalidEvent([("event", f"expected an object, got {type(event).__name__}")])
    try:
        return AgentEvent.model_validate(event)
    except ValidationError as exc:
        raise InvalidEvent(validation_problems(exc)) from None


def _wire_dict(model: AgentEvent) -> dict[str, Any]:
    """Plain values for the encoders (event_type as str, None fields kept for Avro)."""
    data = model.model_dump()
    data["event_type"] = model.event_type.value
    return data


def _key(events: list[dict[str, Any]]) -> bytes | None:
    first = events[0]
    key = first.get("identity_id") or first.get("task_id")
    return key.encode("utf-8") if key else None


def _refusal_reason(err: Any) -> str | None:
    """Why a failure during the first deliveries means 'the broker refuses this producer
    setting' rather than a transient problem: a fatal error or a not-supported code."""
    from confluent_kafka import KafkaError

    code = err.code()
    if code == KafkaError.UNSUPPORTED_COMPRESSION_TYPE:
        return "compression"
    if err.fatal() or code in (
        KafkaError._FATAL,
        KafkaError._UNSUPPORTED_FEATURE,
        KafkaError.UNSUPPORTED_VERSION,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.INVALID_PRODUCER_ID_MAPPING,
        KafkaError.UNKNOWN_PRODUCER_ID,
    ):
        return "idempotence"
    return None


class Publisher:
    """A batching producer of validated events (see the module doc)."""

    def __init__(
        self,
        settings: Settings,
        *,
        topic: str | None = None,
        fmt: Format = "avro",
        batch_max_events: int = 300,
        batch_max_ms: float = 20.0,
        batch_max_bytes: int | None = None,
        idempotence: Idempotence = "auto",
        compression: str = "none",
        linger_ms: int = 5,
        config: Mapping[str, Any] | None = None,
        producer_factory: ProducerFactory | None = None,
        registry_client: Any = None,
    ) -> None:
        if fmt not in ("avro", "json"):
            raise ConfigError(f"format must be avro or json, not {fmt!r}")
        if batch_max_events < 1 or batch_max_ms <= 0:
            raise ConfigError("batch_max_events must be ≥ 1 and batch_max_ms > 0")
        self.settings = settings
        self.topic = topic or settings.topic_events
        self.fmt: Format = fmt
        self.batch_max_events = batch_max_events
        self.batch_max_s = batch_max_ms / 1000.0
        self.batch_max_bytes = batch_max_bytes or settings.max_record_bytes
        self._extra = dict(config or {})
        self._linger_ms = linger_ms
        self._factory = producer_factory or _confluent_producer
        self._auto = idempotence == "auto"
        self._idempotent = bool(idempotence)
        self._compression = compression
        self._encoder = self._make_encoder(registry_client) if fmt == "avro" else None
        self._buffer: list[dict[str, Any]] = []
        self._buffer_since = 0.0
        self._errors: list[str] = []
        self._fatal: Any = None
        self._fallback: str | None = None
        self._fallback_detail = ""
        self._last_warning = 0.0
        #: while nothing is confirmed yet, records are kept to resend after a fallback
        self._probing = True
        self._unconfirmed: dict[int, tuple[bytes, bytes | None]] = {}
        self._seq = 0
        self.events_sent = 0
        self.records_sent = 0
        self.records_delivered = 0
        self.records_failed = 0
        self._producer = self._new_producer()

    # ---- setup -----------------------------------------------------------------------

    def _make_encoder(self, registry_client: Any) -> AvroEncoder:
        url = self.settings.schema_registry_url
        if registry_client is None and not url:
            return AvroEncoder()
        client = registry_client or _registry_client(url or "")
        ev_id = _register(client, self.topic, event_schema(), EVENT_RECORD)
        batch_id = _register(client, self.topic, batch_schema(), BATCH_RECORD)
        return AvroEncoder(ev_id, batch_id)

    def _producer_config(self) -> dict[str, Any]:
        conf: dict[str, Any] = self.settings.confluent_config()
        conf.update(
            {
                "enable.idempotence": self._idempotent,
                "acks": "all",
                "linger.ms": self._linger_ms,
                "compression.type": self._compression,
                "message.max.bytes": MAX_MESSAGE_BYTES,
                "error_cb": self._on_error,
            }
        )
        conf.update(self._extra)
        return conf

    def _new_producer(self) -> ProducerLike:
        return self._factory(self._producer_config())

    # ---- public API ------------------------------------------------------------------

    def publish(self, event: AgentEvent | Mapping[str, Any]) -> None:
        """Validate and buffer one event; sends a batch when full or old enough."""
        data = _wire_dict(validate_event(event))
        if not self._buffer:
            self._buffer_since = time.monotonic()
        self._buffer.append(data)
        full = len(self._buffer) >= self.batch_max_events
        if full or time.monotonic() - self._buffer_since >= self.batch_max_s:
            self._send_buffer()
        self._producer.poll(0)
        self._check_fallback()

    def publish_many(self, events: Iterable[AgentEvent | Mapping[str, Any]]) -> None:
        for event in events:
            self.publish(event)

    def publish_single(self, event: AgentEvent | Mapping[str, Any]) -> None:
        """Validate and send one event as its own record (third-party producer style)."""
        data = _wire_dict(validate_event(event))
        value = self._encoder.event(data) if self._encoder else encode_json(data)
        self._produce(value, _key([data]), 1)
        self._producer.poll(0)
        self._check_fallback()

    def publish_raw(self, value: bytes, key: bytes | None = None) -> None:
        """Send bytes as they are, unvalidated: only for deliberate bad input (the
        simulator's ``--dirty-rate``) and replays of records that are already encoded."""
        self._produce(value, key, 0)
        self._producer.poll(0)
        self._check_fallback()

    def poll(self, timeout: float = 0.0) -> None:
        """Send an overdue batch and serve delivery callbacks; call it when idle."""
        if self._buffer and time.monotonic() - self._buffer_since >= self.batch_max_s:
            self._send_buffer()
        self._producer.poll(timeout)
        self._check_fallback()

    def flush(self, timeout: float = 30.0) -> None:
        """Send everything and wait for acknowledgements; raise ``PublishError`` for any
        record that failed or is still unacknowledged at ``timeout``."""
        if self._buffer:
            self._send_buffer()
        deadline = time.monotonic() + timeout
        remaining = 1
        while True:
            left = deadline - time.monotonic()
            remaining = self._producer.flush(max(0.0, min(left, 0.5)))
            if self._check_fallback():
                continue
            if remaining == 0 or left <= 0:
                break
        self._raise_errors(remaining, timeout)

    def close(self, timeout: float = 30.0) -> None:
        self.flush(timeout)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.flush()
            return
        try:  # deliver what was accepted, but never mask the original exception
            self.flush()
        except GovpipeError as flush_exc:
            log.error("flush after %s failed: %s", exc_type.__name__, flush_exc)

    @property
    def pending(self) -> int:
        """Events buffered but not yet handed to the producer."""
        return len(self._buffer)

    # ---- machinery -------------------------------------------------------------------

    def _send_buffer(self) -> None:
        events, self._buffer = self._buffer, []
        self._send_events(events)

    def _send_events(self, events: list[dict[str, Any]]) -> None:
        value = self._encoder.batch(events) if self._encoder else encode_json_batch(events)
        if len(value) > self.batch_max_bytes and len(events) > 1:
            half = len(events) // 2
            self._send_events(events[:half])
            self._send_events(events[half:])
            return
        self._produce(value, _key(events), len(events))

    def _produce(self, value: bytes, key: bytes | None, n_events: int, count: bool = True) -> None:
        seq = self._seq
        self._seq += 1
        if count:
            self.records_sent += 1
            self.events_sent += n_events
        if self._probing:
            self._unconfirmed[seq] = (value, key)

        def on_delivery(err: Any, msg: Any) -> None:
            self._on_delivery(seq, err)

        while True:
            try:
                self._producer.produce(self.topic, value, key, on_delivery=on_delivery)
                return
            except BufferError:  # local queue full: serve callbacks, then retry
                self._producer.poll(0.05)
            except Exception as exc:  # KafkaException, e.g. after a fatal error
                err = exc.args[0] if exc.args else None
                if self._probing and hasattr(err, "code") and self._fallback_possible(err):
                    self._check_fallback()  # resends this record with the others
                    return
                self._unconfirmed.pop(seq, None)
                self.records_failed += 1
                raise PublishError(f"produce failed: {exc}") from None

    def _on_delivery(self, seq: int, err: Any) -> None:
        if err is None:
            self.records_delivered += 1
            if self._probing:
                self._probing = False
                self._unconfirmed.clear()
            return
        if self._probing and (self._fallback is not None or self._fallback_possible(err)):
            return  # kept in _unconfirmed; the fallback resends it
        self._unconfirmed.pop(seq, None)
        self.records_failed += 1
        if len(self._errors) < 1000:
            self._errors.append(f"{err.name()}: {err.str()}")

    def _on_error(self, err: Any) -> None:
        if err.fatal():
            self._fatal = err
            if self._probing:
                self._fallback_possible(err)
            else:
                log.error("producer fatal error: %s", err.str())
        elif time.monotonic() - self._last_warning > 30.0:
            self._last_warning = time.monotonic()
            log.warning("producer: %s (librdkafka keeps retrying)", err.str())

    def _fallback_possible(self, err: Any) -> bool:
        """Note a refusal that dropping idempotence or compression can fix."""
        reason = _refusal_reason(err)
        if reason == "compression" and self._compression != "none":
            self._fallback = "compression"
        elif reason == "idempotence" and self._auto and self._idempotent:
            self._fallback = "idempotence"
        else:
            return False
        self._fallback_detail = f"{err.name()}: {err.str()}"
        return True

    def _check_fallback(self) -> bool:
        """Rebuild the producer after a refusal and resend the unconfirmed records."""
        if self._fallback is None:
            return False
        what, self._fallback = self._fallback, None
        if what == "idempotence":
            self._idempotent = False
            log.warning(
                "the broker refused the idempotent producer (%s); continuing without "
                "idempotence (retries may duplicate records; the pipeline deduplicates by "
                "event_id)",
                self._fallback_detail,
            )
        else:
            self._compression = "none"
            log.warning(
                "the broker refused compression (%s); sending uncompressed", self._fallback_detail
            )
        old = self._producer
        try:
            old.purge()
        except Exception:  # a producer in fatal state may refuse even that
            log.debug("purge of the refused producer failed", exc_info=True)
        self._fatal = None
        self._producer = self._new_producer()
        resend = sorted(self._unconfirmed.items())
        self._unconfirmed.clear()
        for _, (value, key) in resend:
            self._produce(value, key, 0, count=False)
        return True

    def _raise_errors(self, remaining: int, timeout: float) -> None:
        problems = []
        if self._errors:
            first = sorted(set(self._errors))[:3]
            problems.append(f"{len(self._errors)} record(s) failed ({'; '.join(first)})")
            self._errors = []
        if self._fatal is not None:
            problems.append(f"producer fatal error: {self._fatal.str()}")
        if remaining:
            problems.append(f"{remaining} record(s) unacknowledged after {timeout:g}s")
        if problems:
            raise PublishError("; ".join(problems))


def _confluent_producer(conf: dict[str, Any]) -> ProducerLike:
    from confluent_kafka import Producer

    return cast(ProducerLike, Producer(conf))


def _registry_client(url: str) -> Any:
    try:
        from confluent_kafka.schema_registry import SchemaRegistryClient
    except ImportError as exc:  # the optional extra is missing
        raise ConfigError(
            f"SCHEMA_REGISTRY_URL needs confluent-kafka[schemaregistry] ({exc.name} is missing)"
        ) from None
    new_client = getattr(SchemaRegistryClient, "new_client", None)
    conf = {"url": url}
    return new_client(conf) if new_client else SchemaRegistryClient(conf)


def _register(client: Any, topic: str, schema: dict[str, Any], record: str) -> int:
    """Register under ``{topic}-value`` (TopicNameStrategy); if the registry refuses the
    second record type there as incompatible (409), use ``{topic}-{record}``
    (TopicRecordNameStrategy). The worker resolves by id, so either works."""
    from confluent_kafka.schema_registry import Schema
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    avro = Schema(json.dumps(schema), "AVRO")
    try:
        return int(client.register_schema(f"{topic}-value", avro))
    except SchemaRegistryError as exc:
        if exc.http_status_code != 409:
            raise InfraError(f"schema registry refused {record}: {exc}") from None
    except Exception as exc:
        raise InfraError(f"schema registry unavailable: {type(exc).__name__}") from None
    try:
        return int(client.register_schema(f"{topic}-{record}", avro))
    except SchemaRegistryError as exc:
        raise InfraError(f"schema registry refused {record}: {exc}") from None
    except Exception as exc:
        raise InfraError(f"schema registry unavailable: {type(exc).__name__}") from None
