"""The faust app, built from Settings: the only place that wires stages to topics.

Group timing (DESIGN §3b): faust's defaults (session 60 s, heartbeat 3 s,
rebalance 60 s) made a worker wait 31 s fresh and 110 s after a kill -9 on Tansu;
6 s / 0.5 s / 5 s gives ~4 s and ~12 s, and is also sane on Apache Kafka.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import faust

from pipeline import faust_fixes
from pipeline.flow.schemas import SchemaResolver
from pipeline.flow.stage1 import Enricher, SourceRecord, Stage1, Stage1Output
from pipeline.flow.validate import Validator
from pipeline.settings import Settings
from pipeline.topics import MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)


def broker_credentials(settings: Settings) -> Any:
    """faust credentials for SASL/SSL from the same settings as the confluent clients."""
    proto = settings.kafka_security_protocol
    if proto == "PLAINTEXT":
        return None
    ssl_context = None
    if proto in ("SSL", "SASL_SSL"):
        import ssl

        ssl_context = ssl.create_default_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        )
        if settings.kafka_ssl_certfile:
            ssl_context.load_cert_chain(
                str(settings.kafka_ssl_certfile),
                str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
            )
    if proto == "SSL":
        return faust.SSLCredentials(ssl_context)
    password = (
        settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
    )
    if settings.kafka_sasl_mechanism == "PLAIN":
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username, password=password, ssl_context=ssl_context
        )
    from faust.auth import SASLCredentials

    return SASLCredentials(
        username=settings.kafka_sasl_username,
        password=password,
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=ssl_context,
    )


def create_faust_app(settings: Settings) -> faust.App:
    faust_fixes.apply()
    return faust.App(
        settings.app_id,
        broker=settings.broker_url,
        broker_credentials=broker_credentials(settings),
        datadir=str(settings.data_dir),
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=6.0,
        broker_heartbeat_interval=0.5,
        broker_rebalance_timeout=5.0,
        broker_commit_interval=1.0,
        broker_max_poll_records=2000,
        consumer_max_fetch_size=4 * 1024 * 1024,
        producer_max_request_size=MAX_MESSAGE_BYTES + 64 * 1024,
        producer_acks=-1,
        producer_linger_ms=5,
        stream_buffer_maxsize=8192,
        topic_replication_factor=settings.replication_factor,
        topic_partitions=settings.subjects_partitions,
        table_standby_replicas=0,
    )


@dataclass
class Pipeline:
    """The running pieces, reachable by tests and the metrics endpoint."""

    app: faust.App
    settings: Settings
    stage1: Stage1


async def send_all(
    app: faust.App, out: Stage1Output, subjects: Any, dlq: Any, retry_delay: float = 0.2
) -> None:
    """Send and wait for delivery: the input offsets may be committed only after this."""
    while True:
        futures = []
        for partition, value in out.subject_records:
            futures.append(await subjects.send(value=value, partition=partition, force=True))
        for letter in out.dead_letters:
            futures.append(
                await dlq.send(
                    key=letter.key, value=letter.value, headers=letter.headers, force=True
                )
            )
        try:
            await asyncio.gather(*futures)
            return
        except Exception as exc:  # delivery failed: send the batch again (at-least-once)
            log.warning("delivery failed (%s); resending the batch in %.1f s", exc, retry_delay)
            await asyncio.sleep(retry_delay)
            retry_delay = min(5.0, retry_delay * 2)


def create_pipeline(settings: Settings, enricher: Enricher | None = None) -> Pipeline:
    """The worker's app; ``enricher`` defaults to the Redis registry of ``REDIS_URL``."""
    if enricher is None:
        from pipeline.enrichment import RedisEnricher

        enricher = RedisEnricher.from_settings(settings)
    app = create_faust_app(settings)
    validator = Validator(
        SchemaResolver(settings.schema_registry_url),
        settings.max_record_bytes,
        settings.max_events_per_record,
    )
    stage1 = Stage1(validator, settings.subjects_partitions, enricher)
    events_topic = app.topic(settings.topic_events, key_serializer="raw", value_serializer="raw")
    subjects_topic = app.topic(
        settings.topic_subjects,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.subjects_partitions,
    )
    dlq_topic = app.topic(settings.topic_dlq, key_serializer="raw", value_serializer="raw")
    max_records, within = settings.batch_max_records, settings.batch_max_wait_s

    @app.agent(events_topic, name="govpipe.stage1")  # type: ignore[misc]
    async def stage1_agent(stream: Any) -> None:
        async for batch in stream.take_events(max_records, within):
            records = [
                SourceRecord(e.value, e.key, e.message.topic, e.message.partition, e.message.offset)
                for e in batch
            ]
            out = await stage1.process(records)
            await send_all(app, out, subjects_topic, dlq_topic)

    return Pipeline(app, settings, stage1)
