"""Stage 1 (stateless): records → validated, redacted, enriched events, routed to stage 2.

Batch-first: one call handles a whole batch of Kafka records, with one schema
lookup and one Redis round trip per batch (docs/internals.md). Pure apart from the
awaited dependencies, so it is tested without Kafka.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.detectors.base import REGISTRY_GAP
from pipeline.dlq import DeadLetter, dead_letter
from pipeline.enrichment.readiness import RegistryWatch
from pipeline.flow.route import (
    SUBJECT_RECORD_MAX_BYTES,
    SubjectRecordEncoder,
    SubjectsOf,
    encode_subject_batch,
    route,
)
from pipeline.flow.validate import Rejection, Validator
from pipeline.flow.watermarks import InputMarks, InputTracker
from pipeline.redact import redact_event
from pipeline.retry import retry_forever

log = logging.getLogger(__name__)
Event = dict[str, Any]


class Enricher(Protocol):
    """The enrichment seam (Redis in production); both calls are idempotent."""

    async def apply(self, events: list[Event]) -> None: ...

    async def enrich(self, events: list[Event]) -> None: ...


@dataclass(slots=True)
class SourceRecord:
    """What stage 1 needs of one Kafka record."""

    value: bytes | None
    key: bytes | None
    topic: str
    partition: int
    offset: int


@dataclass(slots=True)
class Stage1Output:
    subject_records: list[tuple[int, bytes]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    events: int = 0


@dataclass(slots=True)
class InputPartitionView:
    """One owned input partition as the last watermark tick saw it (for /metrics)."""

    #: records between what stage 1 has read and the partition's end offset
    lag: int | None
    #: held by watermark alignment (running ahead of the slowest partition)
    aligned_pause: bool
    #: the consumer would fetch it now (not paused by alignment, a rebalance or a full buffer)
    fetching: bool
    idle: bool


@dataclass
class Stage1Stats:
    records_in: int = 0
    events_in: int = 0
    events_out: int = 0
    secrets_redacted: int = 0
    dlq_by_code: Counter[str] = field(default_factory=Counter)
    redis_seconds_sum: float = 0.0
    redis_calls: int = 0
    newest_event_ms: int | None = None
    #: input partition -> its view at the last tick (app.py's stage1_tick)
    inputs: dict[int, InputPartitionView] = field(default_factory=dict)
    #: input partition -> stalls the watchdog saw (flow/inputwatch.py)
    input_stalls: dict[int, int] = field(default_factory=dict)


class Stage1:
    def __init__(
        self,
        validator: Validator,
        partitions: int,
        enricher: Enricher,
        subjects_of: SubjectsOf,
        watermark_every_s: float = 1.0,
        input_partitions: int = 1,
        idle_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        registry: RegistryWatch | None = None,
    ) -> None:
        self.validator = validator
        #: the registry marker's watch (None: an enricher without one, always ready);
        #: events enriched while it says not ready are marked ``REGISTRY_GAP``
        self.registry = registry
        self.partitions = partitions
        self.enricher = enricher
        self.subjects_of = subjects_of
        self.watermark_every_s = watermark_every_s
        #: wall clock for idleness and broadcast pacing only (never for event time)
        self.clock = clock
        self._last_broadcast = 0.0
        #: the report every stage-2 partition last got from us (see ``tick``)
        self._broadcast: InputMarks | None = None
        self.stats = Stage1Stats()
        #: per input partition: newest event time routed, idle or not (flow/watermarks.py)
        self.inputs = InputTracker(input_partitions, idle_s)

    @property
    def watermark(self) -> int | None:
        """The newest event time routed from any input partition (for gauges)."""
        return self.inputs.newest

    def tick(self, caught_up: dict[int, bool], now: float | None = None) -> list[tuple[int, bytes]]:
        """Idleness (a partition caught up to its end offset and silent for the idle
        time stops holding the watermark back) and the report to every stage-2
        partition when it changed since it last went to all of them."""
        now = self.clock() if now is None else now
        self.inputs.tick(now, caught_up)
        report = self.inputs.report()
        if report == self._broadcast:
            return []
        return self._broadcast_report(report, range(self.partitions), now)

    def _broadcast_report(
        self, report: InputMarks, partitions: Any, now: float
    ) -> list[tuple[int, bytes]]:
        marks = report.to_json()
        self._last_broadcast = now
        self._broadcast = report
        return [(p, encode_subject_batch([], marks)) for p in partitions]

    async def process(self, records: list[SourceRecord]) -> Stage1Output:
        out = Stage1Output()
        resolver = self.validator.resolver
        ids = self.validator.schema_ids([r.value for r in records])
        if resolver.missing(ids):
            await retry_forever(lambda: resolver.resolve(ids), log=log, what="schema registry")
        events: list[Event] = []
        now = self.clock()
        for record in records:
            newest: int | None = None
            for rejection, in_events in self._validate(record):
                if rejection is not None:
                    self._reject(out, rejection, record)
                events.extend(in_events)
                for event in in_events:
                    t = event["event_time"]
                    if newest is None or t > newest:
                        newest = t
            self.inputs.observe(record.partition, newest, now, record.offset)
        self.stats.records_in += len(records)
        self.stats.events_in += len(events)
        for i, event in enumerate(events):
            clean, findings = redact_event(event)
            if findings:
                clean["_secrets"] = [{"path": f.path, "kind": f.kind} for f in findings]
                events[i] = clean
                self.stats.secrets_redacted += len(findings)
        if events:
            enricher = self.enricher
            started = time.perf_counter()
            await retry_forever(lambda: enricher.apply(events), log=log, what="redis")
            await retry_forever(lambda: enricher.enrich(events), log=log, what="redis")
            self.stats.redis_seconds_sum += time.perf_counter() - started
            self.stats.redis_calls += 1
            if not await self._registry_ready():
                for event in events:
                    event[REGISTRY_GAP] = True
        self.stats.newest_event_ms = self.inputs.newest
        routed = route(events, self.partitions, self.subjects_of)
        # Each record's report is taken after its events were observed: a stage-2
        # partition gets the events of a batch before (or with) the report covering them.
        report = self.inputs.report()
        marks = report.to_json()
        # Not closed: the events end here, so their views need not be put back.
        encoder = SubjectRecordEncoder(SUBJECT_RECORD_MAX_BYTES)
        for partition, items in routed.items():
            for value in encoder.records(items, marks):
                out.subject_records.append((partition, value))
        if records and now - self._last_broadcast >= self.watermark_every_s:
            # Partitions this batch did not reach still need the watermark to move
            # (absence checks fire on event time, not on the wall clock).
            rest = [p for p in range(self.partitions) if p not in routed]
            out.subject_records += self._broadcast_report(report, rest, now)
        out.events = len(events)
        self.stats.events_out += len(events)
        return out

    async def _registry_ready(self) -> bool:
        """Was the registry ready at the last read of its marker (every 5 s)? Read now
        if it never was (a worker's first batch); unreadable counts as ready: a Redis
        outage is not a lost registry."""
        watch = self.registry
        if watch is None:
            return True
        status = watch.status if watch.status is not None else await watch.check()
        return status is None or status.ready

    def _validate(self, record: SourceRecord) -> list[tuple[Rejection | None, list[Event]]]:
        try:
            result = self.validator.validate(record.value)
        except Exception as exc:  # a bug must not lose the record or kill the worker
            log.exception(
                "internal error validating %s[%d]@%d", record.topic, record.partition, record.offset
            )
            return [(Rejection("internal_error", type(exc).__name__, record.value or b""), [])]
        pairs: list[tuple[Rejection | None, list[Event]]] = [(None, result.events)]
        pairs.extend((r, []) for r in result.rejections)
        return pairs

    def _reject(self, out: Stage1Output, rejection: Rejection, record: SourceRecord) -> None:
        self.stats.dlq_by_code[rejection.code] += 1
        out.dead_letters.append(
            dead_letter(rejection, record.topic, record.partition, record.offset, record.key)
        )
