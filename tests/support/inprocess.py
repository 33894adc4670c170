"""Stage 1 and stage 2 in one process, with input partitions read in any order.

The harness delivers what Kafka would: stage 1 handles records from the input
partition the test names (so a test can read one partition far ahead of
another), its internal records go to stage 2's partitions in the order they
were produced, and stage 2's own outputs (finding notices, metric deltas,
progress) go back through the same queues. Stage 2 runs through the worker's
own protocol (``flow/stage2_runner.Stage2Runner``: units, state before outputs,
outputs, sent); a dict stands in for the faust Table (written from the changelog
bytes, as a recovery would read them).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import orjson

from pipeline.codec import encode_json_batch
from pipeline.detectors.engine import DetectionEngine
from pipeline.detectors.policy import DEFAULT_POLICY, Policy
from pipeline.evidence import EvidenceThresholds
from pipeline.flow.route import stage1_subjects
from pipeline.flow.schemas import SchemaResolver
from pipeline.flow.stage1 import SourceRecord, Stage1
from pipeline.flow.stage2 import Stage2, Write, apply_writes
from pipeline.flow.stage2_runner import (
    AlertMessage,
    EvidenceMessage,
    InternalMessage,
    InternalRecord,
    MetricMessage,
    Output,
    Stage2Runner,
)
from pipeline.flow.validate import Validator
from pipeline.metrics import MetricRecord
from tests.support.reference_enricher import MemoryEnricher

Event = dict[str, Any]


class Store(dict[str, Any]):
    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key, default)


class _Log:
    """The Table: a dict written from the changelog bytes."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, key: str) -> Any:
        return self.store.get(key)

    def keys(self) -> Any:
        return self.store.keys()

    async def write(self, partition: int, writes: list[Write], wait: bool = True) -> None:
        apply_writes(self.store, writes)


class _Topics:
    """Internal records go back to the stage-2 queues; alerts and metrics are kept."""

    def __init__(self, harness: InProcess) -> None:
        self.harness = harness

    async def seek(self, partition: int, offset: int) -> None:
        raise AssertionError("the in-process harness never loses offsets")

    async def deliver(self, messages: list[Output]) -> None:
        h = self.harness
        for message in messages:
            if isinstance(message, InternalMessage):
                h.queues[message.partition].append(message.value)
            elif isinstance(message, AlertMessage):
                h.alerts.append(orjson.loads(message.value))
            elif isinstance(message, MetricMessage):
                h.metrics.append(message.record)
            elif isinstance(message, EvidenceMessage):
                h.evidence.append(message.record)


class InProcess:
    """``read(partition, events)`` = stage 1 reads one record of that input partition."""

    def __init__(
        self,
        input_partitions: int,
        subject_partitions: int = 3,
        policy: Policy | None = None,
        identities: dict[str, dict[str, Any]] | None = None,
        idle_s: float = 5.0,
        window_sizes_ms: tuple[int, ...] = (60_000,),
        evidence: bool = True,
    ) -> None:
        policy = policy or DEFAULT_POLICY
        self.engine = DetectionEngine(policy)
        self.enricher = MemoryEnricher(identities=identities or {})
        self.clock = 0.0
        self.stage1 = Stage1(
            Validator(SchemaResolver(), 2_000_000, 10_000),
            subject_partitions,
            self.enricher,
            stage1_subjects(self.engine.subject_kinds_for, evidence),
            input_partitions=input_partitions,
            idle_s=idle_s,
            clock=lambda: self.clock,
        )
        self.stage1.inputs.assign(set(range(input_partitions)), self.clock)
        self.stage2 = Stage2(
            self.engine,
            subject_partitions,
            policy.allowed_lateness_ms,
            "test",
            window_sizes_ms=window_sizes_ms,
            evidence=EvidenceThresholds.from_specs(self.engine.specs) if evidence else None,
        )
        # Time here is simulated: progress is not rate-limited by the wall clock (a
        # task judges on the progress every partition relayed, stage2._task_clock).
        self.stage2.progress_every_s = 0.0
        self.partitions = subject_partitions
        self.store = Store()
        self.offsets = dict.fromkeys(range(input_partitions), 0)
        self.queues: dict[int, deque[bytes]] = {p: deque() for p in range(subject_partitions)}
        self.next_offset = dict.fromkeys(range(subject_partitions), 0)
        self.alerts: list[dict[str, Any]] = []
        self.metrics: list[MetricRecord] = []
        #: evidence dossiers published (every revision, in order)
        self.evidence: list[dict[str, Any]] = []
        self.late_events = 0
        self.runner = Stage2Runner(self.stage2, _Log(self.store), _Topics(self), "internal")

    # -- input ----------------------------------------------------------------
    def read(self, partition: int, events: list[Event]) -> None:
        """Stage 1 reads one JSON batch record of input ``partition``; stage 2 then
        drains every internal record produced so far."""
        self.clock += 0.01
        offset = self.offsets[partition]
        self.offsets[partition] += 1
        record = SourceRecord(encode_json_batch(events), None, "events", partition, offset)
        out = asyncio.run(self._process(record))
        for target, value in out:
            self.queues[target].append(value)
        self.drain()

    async def _process(self, record: SourceRecord) -> list[tuple[int, bytes]]:
        out = await self.stage1.process([record])
        assert not out.dead_letters, [d.headers for d in out.dead_letters]
        return out.subject_records

    def idle(self, caught_up: set[int], seconds: float = 60.0) -> None:
        """Wall time passes with ``caught_up`` partitions at their end offsets."""
        self.clock += seconds
        caught = {p: p in caught_up for p in self.offsets}
        for target, value in self.stage1.tick(caught, now=self.clock):
            self.queues[target].append(value)
        self.drain()

    # -- stage 2 --------------------------------------------------------------
    def drain(self) -> None:
        while any(self.queues.values()):
            for partition in range(self.partitions):
                queue = self.queues[partition]
                while queue:
                    self._unit(partition, queue.popleft())

    def _unit(self, partition: int, value: bytes) -> None:
        offset = self.next_offset[partition]
        self.next_offset[partition] += 1
        record = InternalRecord(partition, offset, value)
        for out in asyncio.run(self.runner.handle([record], collect=True)):
            self.late_events += out.late_events

    # -- results --------------------------------------------------------------
    def creates(self, detector: str | None = None) -> list[dict[str, Any]]:
        return [
            a
            for a in self.alerts
            if a["activity_id"] == 1 and (detector is None or a["detector"] == detector)
        ]

    def findings(self, detector: str) -> list[dict[str, Any]]:
        return [a for a in self.alerts if a["detector"] == detector]
