"""The faust app, built from Settings: the only place that wires stages to topics.

Group timing (docs/internals.md): faust's defaults (session 60 s, heartbeat 3 s,
rebalance 60 s) made a worker wait 31 s fresh and 110 s after a kill -9 on Tansu;
6 s / 0.5 s / 5 s gives ~4 s and ~12 s, and is also sane on Apache Kafka.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TP

from pipeline import __version__, faust_codecs, faust_fixes
from pipeline.detectors.engine import DetectionEngine
from pipeline.detectors.kinds import provided
from pipeline.detectors.policy import load_policy
from pipeline.enrichment.readiness import RegistryWatch
from pipeline.evidence import EvidenceThresholds
from pipeline.evidence.codec import EvidenceCodec
from pipeline.evidence.codec import record_key as evidence_key
from pipeline.flow.inputwatch import InputWatch
from pipeline.flow.route import stage1_subjects
from pipeline.flow.schemas import SchemaResolver
from pipeline.flow.stage1 import Enricher, InputPartitionView, SourceRecord, Stage1
from pipeline.flow.stage2 import PROGRESS_EVERY_S, Stage2
from pipeline.flow.stage2_runner import (
    AlertMessage,
    EvidenceMessage,
    InternalMessage,
    InternalRecord,
    MetricMessage,
    Output,
    Stage2Runner,
)
from pipeline.flow.tablelog import TableLog
from pipeline.flow.validate import Validator
from pipeline.metrics import MetricCodec, record_key
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
    faust_codecs.register()
    return faust.App(
        settings.app_id,
        broker=settings.broker_url,
        broker_credentials=broker_credentials(settings),
        datadir=str(settings.data_dir),
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        canonical_url=settings.web_advertised_url,
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
        producer_compression_type=(
            None if settings.kafka_compression == "none" else settings.kafka_compression
        ),
        # Every send is awaited before the next batch is taken: lingering only adds
        # latency (measured: stage 1 alone 10k → 13.5k ev/s without the 5 ms linger).
        producer_linger_ms=0,
        # A stage-2 unit's changelog writes go out as record batches of this size
        # (flow/tablelog.py); faust's 16 KiB default split them into many requests.
        producer_max_batch_size=1024 * 1024,
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
    stage2: Stage2


Outgoing = tuple[Any, dict[str, Any]]  # (faust topic, send kwargs)

#: Input bytes stage 1 handles (and delivers) at a time. A take of 500 batched
#: records is up to 150,000 events; handled whole, its working set outgrew the
#: CPU caches and every step slowed down (route + encode measured 4.6 µs/event
#: in groups of 1,200 events, 11.7 in one of 60,000), and its output was held
#: in memory at once. 1 MiB is ~3,000 Avro events.
STAGE1_GROUP_BYTES = 1024 * 1024


def input_groups(batch: list[Any], max_bytes: int = STAGE1_GROUP_BYTES) -> list[list[Any]]:
    """``batch`` in order, cut into runs of at most ``max_bytes`` of record values
    (a larger record goes alone)."""
    groups: list[list[Any]] = []
    group: list[Any] = []
    size = 0
    for event in batch:
        n = len(event.value or b"")
        if group and size + n > max_bytes:
            groups.append(group)
            group, size = [], 0
        group.append(event)
        size += n
    if group:
        groups.append(group)
    return groups


def leave_unacked(consumer: Any, events: list[Any]) -> None:
    """Keep the offsets of a take's ``events`` uncommitted: read again after a restart.

    A take of 500 batched records is up to 150,000 events (~5-10 s of stage 1); at
    SIGTERM faust waits for the take to end, and acknowledges every event of it when
    it does, handled or not. One more reference per message keeps faust's
    acknowledgement from reaching zero (the offset is not committed), and the
    consumer no longer waits for it on the way out.
    """
    for event in events:
        event.message.incref()
        consumer._unacked_messages.discard(event.message)


async def deliver(messages: list[Outgoing], retry_delay: float = 0.2) -> None:
    """Send and wait for delivery: the input offsets may be committed only after this."""
    while True:
        try:
            futures = await enqueue(messages)
            await asyncio.gather(*futures)
            return
        except Exception as exc:  # delivery failed: send the batch again (at-least-once)
            log.warning("delivery failed (%s); resending the batch in %.1f s", exc, retry_delay)
            await asyncio.sleep(retry_delay)
            retry_delay = min(5.0, retry_delay * 2)


async def enqueue(messages: list[Outgoing]) -> list[Any]:
    """Hand the messages to the producer; the futures resolve on acknowledgement."""
    return [await topic.send(force=True, **kwargs) for topic, kwargs in messages]


async def confirm(messages: list[Outgoing], futures: list[Any]) -> None:
    """Wait for messages already enqueued; if any failed, deliver them all again."""
    try:
        await asyncio.gather(*futures)
    except Exception as exc:
        log.warning("delivery failed (%s); resending the batch", exc)
        await deliver(messages)


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
    policy = load_policy(settings.policy_file)
    engine = DetectionEngine(policy)
    stage1 = Stage1(
        validator,
        settings.subjects_partitions,
        enricher,
        stage1_subjects(engine.subject_kinds_for, settings.evidence),
        input_partitions=settings.events_partitions,
        idle_s=settings.idle_partition_s,
    )
    grace_ms = int(provided(engine.specs, "revocation_grace_ms"))
    stage2 = Stage2(
        engine,
        settings.subjects_partitions,
        policy.allowed_lateness_ms,
        __version__,
        window_sizes_ms=tuple(s * 1000 for s in settings.metric_windows_s),
        metrics_lateness_ms=settings.metrics_lateness_s * 1000,
        grace_ms=grace_ms,
        evidence=EvidenceThresholds.from_specs(engine.specs) if settings.evidence else None,
        abandoned_after_ms=settings.abandoned_after_s * 1000,
    )
    metric_codec = MetricCodec.from_settings(settings, fmt=settings.metrics_format)
    metric_codec.register()
    evidence_codec = EvidenceCodec(
        topic=settings.topic_evidence, registry_url=settings.schema_registry_url
    )
    if settings.evidence and 2 in settings.worker_stages:
        evidence_codec.register()
    events_topic = app.topic(settings.topic_events, key_serializer="raw", value_serializer="raw")
    subjects_topic = app.topic(
        settings.topic_subjects,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.subjects_partitions,
    )
    dlq_topic = app.topic(settings.topic_dlq, key_serializer="raw", value_serializer="raw")
    alerts_topic = app.topic(settings.topic_alerts, key_serializer="raw", value_serializer="raw")
    metrics_topic = app.topic(settings.topic_metrics, key_serializer="raw", value_serializer="raw")
    evidence_topic = app.topic(
        settings.topic_evidence, key_serializer="raw", value_serializer="raw"
    )
    max_records, within = settings.batch_max_records, settings.batch_max_wait_s
    # Held while stage 1 turns records into messages and enqueues them, and while the
    # tick enqueues a watermark report: a report never overtakes the events it covers.
    stage1_lock = asyncio.Lock()
    max_skew_ms = settings.max_partition_skew_s * 1000
    paused: set[int] = set()
    inputs_watch = InputWatch()

    async def stage1_agent(stream: Any) -> None:
        # Each group's output is enqueued and the next group handled while it is in
        # flight; the batch's offsets are committed only after every ack.
        async for batch in stream.take_events(max_records, within):
            sent: list[Outgoing] = []
            futures: list[Any] | None = []
            groups = input_groups(batch)
            for n, group in enumerate(groups):
                if app.should_stop:  # SIGTERM: the rest of the take waits for the restart
                    leave_unacked(app.consumer, [e for g in groups[n:] for e in g])
                    break
                async with stage1_lock:
                    messages = await stage1_group(group)
                    sent += messages
                    if futures is not None:
                        try:
                            futures += await enqueue(messages)
                        except Exception as exc:  # the producer refused: deliver all at the end
                            log.warning("enqueue failed (%s); the batch will be resent", exc)
                            futures = None
                # A group is ~100 ms of work and its sends need not suspend: let the
                # loop serve heartbeats, commits, /metrics and signals in between.
                await asyncio.sleep(0)
            await (deliver(sent) if futures is None else confirm(sent, futures))
            await align()

    generation = -1  # the consumer generation alignment last worked in
    align_lock = asyncio.Lock()

    async def align() -> None:
        """Watermark alignment (as Flink's): pause input partitions running more than
        the allowed skew ahead of the slowest active one; resume them when it catches up.

        Not during a rebalance: faust pauses every partition then and resumes them all
        once recovery has sought them back to their committed offsets; a resume of ours
        in between could fetch before that seek (the #596 window, faust_fixes.py). So
        after a rebalance our pauses are void and are worked out again.

        A partition is sought back before it resumes: faust (0.15) filters a fetched
        batch by its live set of active partitions, so the records of a partition paused
        while its fetch was in flight are dropped, never yielded, while the client's
        position has moved past them. Seen in a soak: the partition's last records never
        came, its watermark held every other partition back, and its offsets were never
        committed (nothing lost, but nothing moved until a restart)."""
        if getattr(app, "rebalancing", False):
            return
        async with align_lock:  # the agent and the tick both align; seeks suspend
            await _align()

    async def _align() -> None:
        nonlocal generation
        current = getattr(app, "consumer_generation_id", 0)
        if current != generation:
            generation = current
            paused.clear()  # faust resumed every stream partition at the rebalance's end
        ahead = stage1.inputs.ahead(max_skew_ms)
        pause, resume = ahead - paused, paused - ahead
        if pause:
            app.consumer.pause_partitions({TP(settings.topic_events, p) for p in pause})
        if resume:
            for p in resume:
                await read_on(p)
            app.consumer.resume_partitions({TP(settings.topic_events, p) for p in resume})
        paused.clear()
        paused.update(ahead)

    async def read_on(partition: int) -> None:
        """Seek an input partition to the offset after the last one stage 1 handled (a
        record in flight may come twice: stage 2 drops it by event id)."""
        read = stage1.inputs.read_up_to(partition)
        if read is not None:
            await app.consumer.seek(TP(settings.topic_events, partition), read + 1)

    async def watch_inputs() -> None:
        """Say once when an input partition with records left is neither held by
        alignment nor read for a minute, with the consumer's view, then read it on from
        the offset after the last one handled, and resume it if the consumer is not
        fetching it (flow/inputwatch.py)."""
        if getattr(app, "rebalancing", False):
            return
        views = stage1.stats.inputs
        stalled = inputs_watch.check(
            stage1.clock(),
            {p: stage1.inputs.read_up_to(p) for p in views},
            {p: v.lag for p, v in views.items()},
            set(paused),
        )
        consumer = app.consumer
        for p in stalled:
            tp = TP(settings.topic_events, p)
            view = views[p]
            read = stage1.inputs.read_up_to(p)
            log.warning(
                "input partition %d: %s records left and nothing read for %.0f s "
                "(fetching=%s, paused by faust=%s, buffer full=%s, aligned=%s, idle=%s); "
                "%s%s",
                p,
                view.lag,
                inputs_watch.stall_s,
                view.fetching,
                tp in getattr(consumer, "_paused_partitions", ()),
                tp in getattr(consumer, "_buffered_partitions", ()),
                view.aligned_pause,
                view.idle,
                "nothing read since assignment to seek back to"
                if read is None
                else f"reading on from offset {read + 1}",
                " and resuming it" if not view.fetching else "",
            )
            await read_on(p)
            if not view.fetching:
                consumer.resume_partitions({tp})
        stage1.stats.input_stalls = dict(inputs_watch.stalls)

    async def caught_up() -> dict[int, bool]:
        """Per owned input partition: has stage 1 read everything up to its end offset?
        Also records each partition's lag and fetch state for /metrics."""
        tps = [tp for tp in app.consumer.assignment() if tp.topic == settings.topic_events]
        owned = {tp.partition for tp in tps}
        stage1.inputs.revoke(stage1.inputs.owned - owned)
        stage1.inputs.assign(owned, stage1.clock())
        total = app.consumer.topic_partitions(settings.topic_events)
        if total:
            stage1.inputs.partitions = int(total)
        if not tps:
            stage1.stats.inputs = {}
            return {}
        ends = await app.consumer.highwaters(*tps)
        # faust's own view: a partition is fetched when it is in the consumer's active
        # set (not paused by us, by a rebalance, or by a full stream buffer).
        active = getattr(app.consumer, "_active_partitions", None)
        out: dict[int, bool] = {}
        views: dict[int, InputPartitionView] = {}
        for tp in tps:
            end = ends.get(tp)
            read = stage1.inputs.read_up_to(tp.partition)
            next_offset = await app.consumer.position(tp) if read is None else read + 1
            out[tp.partition] = end is not None and next_offset is not None and next_offset >= end
            views[tp.partition] = InputPartitionView(
                lag=None if end is None or next_offset is None else max(0, end - next_offset),
                aligned_pause=tp.partition in paused,
                fetching=active is None or tp in active,
                idle=stage1.inputs.is_idle(tp.partition),
            )
        stage1.stats.inputs = views
        return out

    async def stage1_tick() -> None:
        try:
            status = await caught_up()
        except Exception as exc:  # broker trouble: the partitions simply stay active
            log.debug("input end offsets unavailable (%s)", exc)
            return
        await align()
        await watch_inputs()
        async with stage1_lock:
            messages: list[Outgoing] = [
                (subjects_topic, {"value": value, "partition": partition})
                for partition, value in stage1.tick(status)
            ]
            futures = await enqueue(messages) if messages else []
        if messages:
            await confirm(messages, futures)

    async def stage1_group(batch: list[Any]) -> list[Outgoing]:
        records = [
            SourceRecord(e.value, e.key, e.message.topic, e.message.partition, e.message.offset)
            for e in batch
        ]
        out = await stage1.process(records)
        messages: list[Outgoing] = [
            (subjects_topic, {"value": value, "partition": partition})
            for partition, value in out.subject_records
        ]
        messages += [
            (dlq_topic, {"key": dl.key, "value": dl.value, "headers": dl.headers})
            for dl in out.dead_letters
        ]
        return messages

    async def stage2_agent(stream: Any) -> None:
        # Batch-first: units of up to ~0.1 s of work per partition (flow/stage2_runner.py).
        async for batch in stream.take_events(max_records, within):
            await runner.handle(
                [InternalRecord(e.message.partition, e.message.offset, e.value) for e in batch]
            )

    def outgoing(message: Output) -> Outgoing:
        if isinstance(message, InternalMessage):
            return (subjects_topic, {"value": message.value, "partition": message.partition})
        if isinstance(message, AlertMessage):
            return (alerts_topic, {"key": message.key, "value": message.value})
        if isinstance(message, MetricMessage):
            record = message.record
            return (
                metrics_topic,
                {"key": record_key(record), "value": metric_codec.encode(record)},
            )
        if isinstance(message, EvidenceMessage):
            dossier = message.record
            return (
                evidence_topic,
                {"key": evidence_key(dossier), "value": evidence_codec.encode(dossier)},
            )
        return (dlq_topic, {"key": message.key, "value": message.value, "headers": message.headers})

    class Stage2Transport:
        """Stage 2's Kafka side: seek the internal topic, send outputs to their topics."""

        async def seek(self, partition: int, offset: int) -> None:
            await app.consumer.seek(TP(settings.topic_subjects, partition), offset)

        async def deliver(self, messages: list[Output]) -> None:
            await deliver([outgoing(m) for m in messages])

    # A process runs stage 1, stage 2 or both (GOVPIPE_WORKER_STAGES); processes that
    # run different stages belong to different consumer groups (GOVPIPE_APP_ID).
    registry: RegistryWatch | None = None
    if 1 in settings.worker_stages:
        app.agent(events_topic, name="govpipe.stage1")(stage1_agent)
        app.timer(1.0, name="govpipe.stage1.watermarks")(stage1_tick)
        # Is the registry loaded? (readiness.py) While not, stage 1 marks the events it
        # enriches and the detectors that need the registry leave them out.
        registry = RegistryWatch.of(enricher, paused=engine.registry_ids)
        if registry is not None:
            stage1.registry = registry
            app.task(registry.run)
    if 2 in settings.worker_stages:
        state = app.Table(
            "subject-state",
            default=None,
            partitions=settings.subjects_partitions,
            schema=faust.Schema(key_serializer="govpipe-utf8", value_serializer="govpipe-orjson"),
            extra_topic_configs={"max.message.bytes": str(MAX_MESSAGE_BYTES)},
        )
        runner = Stage2Runner(
            stage2,
            TableLog(app, state),
            Stage2Transport(),
            settings.topic_subjects,
            # SIGTERM: the rest of the take is read again by the partitions' next
            # owner (stage2_runner.py, step 6). Not at a rebalance: leaving the take
            # then lost metric windows once in the delivery-order test (internals.md).
            stopping=lambda: app.should_stop,
            budget_s=settings.stage2_unit_budget_s,
        )
        app.agent(subjects_topic, name="govpipe.stage2")(stage2_agent)

        # Progress the rate limit held back goes out between units (stage2.py,
        # PROGRESS): tasks and metric windows wait for every partition's last one.
        async def stage2_progress() -> None:
            await runner.flush_forever(PROGRESS_EVERY_S)

        app.task(stage2_progress)
        if stage2.evidence is not None:  # GET /evidence/task?id=: evidence/query.py
            from pipeline.evidence import query

            store = TableLog(app, state)
            query.register(app, store, stage2.evidence, evidence_codec, settings)

    # Registered before faust's own "/" (its blueprints come later): the first wins.
    @app.page("/")  # type: ignore[misc]
    async def health_page(web: Any, request: Any) -> Any:
        from pipeline.observability import health

        return web.json(health(registry.status if registry is not None else None))

    @app.page("/metrics")  # type: ignore[misc]
    async def metrics_page(web: Any, request: Any) -> Any:
        from pipeline.observability import render

        cache = enricher.cache_stats() if hasattr(enricher, "cache_stats") else None
        status = registry.status if registry is not None else None
        redis_errors = getattr(enricher, "errors", None)
        body = render(stage1.stats, stage2.stats, cache, registry=status, redis_errors=redis_errors)
        return web.text(body, content_type="text/plain; version=0.0.4")

    @app.on_partitions_revoked.connect  # type: ignore[misc,arg-type]
    async def _revoked(app: Any, revoked: Any, **_: Any) -> None:
        stage2.forget({tp.partition for tp in revoked if tp.topic == settings.topic_subjects})
        # Another process may own these now: we no longer report their watermark.
        stage1.inputs.revoke({tp.partition for tp in revoked if tp.topic == settings.topic_events})
        paused.difference_update(
            tp.partition for tp in revoked if tp.topic == settings.topic_events
        )

    return Pipeline(app, settings, stage1, stage2)
