"""Stage 1 (stateless): records → validated, redacted, enriched events, routed to stage 2.

Batch-first: one call handles a whole batch of Kafka records, with one schema
lookup and one Redis round trip per batch (DESIGN §3b). Pure apart from the
awaited dependencies, so it is tested without Kafka.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.dlq import DeadLetter, dead_letter
from pipeline.flow.route import (
    Item,
    SubjectRecordEncoder,
    SubjectsOf,
    encode_subject_batch,
    route,
)
from pipeline.flow.validate import Rejection, Validator
from pipeline.redact import redact_event
from pipeline.retry import retry_forever

log = logging.getLogger(__name__)
Event = dict[str, Any]

#: Upper bound of one internal record. A catch-up batch (after a Redis outage or
#: a restart with a backlog: up to ``batch_max_records`` records of up to
#: ``max_events_per_record`` events each) once made a single internal record of
#: 9 MB, which the producer refused (max request 8 MiB + 64 KiB): the agent
#: crashed and faust dropped the in-flight batch. 4 MiB is half the topic's
#: ``max.message.bytes`` and equals the consumer's per-partition fetch size;
#: a single event copy is bounded by ``max_record_bytes`` (2 MiB), so it always fits.
SUBJECT_RECORD_MAX_BYTES = 4 * 1024 * 1024


def encode_bounded(
    items: list[Item], watermark: int | None, max_bytes: int = SUBJECT_RECORD_MAX_BYTES
) -> list[bytes]:
    """``items`` as internal records of at most ``max_bytes`` each (a single
    oversized event still goes alone); see ``SubjectRecordEncoder``."""
    with SubjectRecordEncoder(max_bytes) as encoder:
        return encoder.records(items, watermark)


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


class Stage1:
    def __init__(
        self,
        validator: Validator,
        partitions: int,
        enricher: Enricher,
        subjects_of: SubjectsOf,
        watermark_every_s: float = 1.0,
    ) -> None:
        self.validator = validator
        self.partitions = partitions
        self.enricher = enricher
        self.subjects_of = subjects_of
        self.watermark_every_s = watermark_every_s
        self._last_broadcast = 0.0
        self.stats = Stage1Stats()
        self.watermark: int | None = None

    async def process(self, records: list[SourceRecord]) -> Stage1Output:
        out = Stage1Output()
        resolver = self.validator.resolver
        ids = self.validator.schema_ids([r.value for r in records])
        if resolver.missing(ids):
            await retry_forever(lambda: resolver.resolve(ids), log=log, what="schema registry")
        events: list[Event] = []
        for record in records:
            for rejection, in_events in self._validate(record):
                if rejection is not None:
                    self._reject(out, rejection, record)
                events.extend(in_events)
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
        if events:
            newest = max(e["event_time"] for e in events)
            if self.watermark is None or newest > self.watermark:
                self.watermark = newest
                self.stats.newest_event_ms = newest
        routed = route(events, self.partitions, self.subjects_of)
        # Not closed: the events end here, so their views need not be put back.
        encoder = SubjectRecordEncoder(SUBJECT_RECORD_MAX_BYTES)
        for partition, items in routed.items():
            for value in encoder.records(items, self.watermark):
                out.subject_records.append((partition, value))
        now = time.monotonic()
        if events and now - self._last_broadcast >= self.watermark_every_s:
            # Partitions this batch did not reach still need the watermark to move
            # (absence checks fire on event time, not on the wall clock).
            self._last_broadcast = now
            for partition in range(self.partitions):
                if partition not in routed:
                    out.subject_records.append(
                        (partition, encode_subject_batch([], self.watermark))
                    )
        out.events = len(events)
        self.stats.events_out += len(events)
        return out

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
