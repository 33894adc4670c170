"""Stage 2's unit, rewind and delivery protocol, without Kafka (the worker wires it).

One call of ``Stage2Runner.handle`` takes the internal records one
``take_events`` batch brought and, per partition:

1. groups them into *units* (a partition's records of the batch, cut at
   ``UNIT_MAX_ITEMS`` items: a unit's outputs and redo go in single records);
2. asks ``Stage2.rewind`` whether the input resumed past what the recovered state
   covers: then the partition is sought back (``Transport.seek``) and the records
   already buffered are skipped (they come again);
3. judges each unit (``Stage2.process_unit``), writes its changelog writes and waits
   for them (``StateLog.write``): **state before outputs**, because an alert's
   activity is decided by the state and a restart re-sends the unit's outputs from it;
4. delivers the unit's outputs (``Transport.deliver`` returns once they are
   acknowledged): alerts, metric records, evidence dossiers, dead letters and
   internal messages for other stage-2 partitions (metric deltas, progress, finding
   notices);
5. marks the unit sent, queued and not awaited: later writes of the partition queue
   behind it, and if a crash loses it the restart re-sends outputs already delivered
   (at least once; outputs are idempotent by key).

The runner never touches faust: ``pipeline/app.py`` gives it the Table's changelog
(``flow/tablelog.py``) and a transport that seeks the consumer and sends to topics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from pipeline.dlq import DeadLetter
from pipeline.flow.messages import Message
from pipeline.flow.route import decode_subject_batch, encode_bounded
from pipeline.flow.stage2 import (
    UNIT_MAX_ITEMS,
    Record,
    Stage2,
    Stage2Output,
    Write,
    quarantine_letter,
)
from pipeline.metrics import MetricRecord


@dataclass(frozen=True, slots=True)
class InternalRecord:
    """What the runner needs of one record of the internal topic."""

    partition: int
    offset: int
    value: bytes


@dataclass(frozen=True, slots=True)
class AlertMessage:
    """An OCSF finding for the alerts topic, keyed by its ``alert_id``."""

    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class MetricMessage:
    """A metric record for the metrics topic (the worker's codec encodes it)."""

    record: MetricRecord


@dataclass(frozen=True, slots=True)
class EvidenceMessage:
    """A task's evidence dossier for the evidence topic (the worker's codec encodes it),
    keyed by ``task_id``."""

    record: dict[str, Any]


@dataclass(frozen=True, slots=True)
class InternalMessage:
    """An internal record for another (or this) stage-2 partition."""

    partition: int
    value: bytes


#: One output of a unit; dead letters are ``pipeline.dlq.DeadLetter``s.
Output = AlertMessage | MetricMessage | EvidenceMessage | DeadLetter | InternalMessage


class StateLog(Protocol):
    """The Table's store and changelog (``flow/tablelog.TableLog``; a dict in tests)."""

    def get(self, key: str) -> Any: ...

    def keys(self) -> Any: ...

    async def write(self, partition: int, writes: list[Write], wait: bool = True) -> None: ...


class Transport(Protocol):
    """What the runner asks of Kafka."""

    async def seek(self, partition: int, offset: int) -> None:
        """Read ``partition`` of the internal topic again from ``offset``."""

    async def deliver(self, messages: list[Output]) -> None:
        """Send and return once every message is acknowledged (retrying as needed)."""


def units(
    records: list[InternalRecord], max_items: int = UNIT_MAX_ITEMS
) -> dict[int, list[list[Record]]]:
    """The records decoded and grouped per partition into units of at most
    ``max_items`` items (a record alone may have more), offsets in order."""
    out: dict[int, list[list[Record]]] = {}
    sizes: dict[int, int] = {}
    for record in records:
        upstream_wm, items = decode_subject_batch(record.value)
        chunks = out.setdefault(record.partition, [[]])
        size = sizes.get(record.partition, 0)
        if size + len(items) > max_items and chunks[-1]:
            chunks.append([])
            size = 0
        chunks[-1].append((record.offset, upstream_wm, items))
        sizes[record.partition] = size + len(items)
    return out


class Stage2Runner:
    def __init__(
        self,
        stage2: Stage2,
        state_log: StateLog,
        transport: Transport,
        internal_topic: str,
        max_items: int = UNIT_MAX_ITEMS,
    ) -> None:
        self.stage2 = stage2
        self.state_log = state_log
        self.transport = transport
        #: the internal topic's name, the source of dead letters raised in stage 2
        self.internal_topic = internal_topic
        self.max_items = max_items

    async def handle(self, records: list[InternalRecord]) -> list[Stage2Output]:
        """One ``take_events`` batch of the internal topic (module doc, steps 1-5);
        returns each unit's output once delivered."""
        done: list[Stage2Output] = []
        for partition, chunks in units(records, self.max_items).items():
            skip, seek_to = self.stage2.rewind(self.state_log, partition, chunks[0][0][0])
            if seek_to is not None:
                await self.transport.seek(partition, seek_to)
            if skip:
                continue
            for unit in chunks:
                done.append(await self.run_unit(partition, unit))
        return done

    async def run_unit(self, partition: int, records: list[Record]) -> Stage2Output:
        out = self.stage2.process_unit(self.state_log, partition, records)
        await self.state_log.write(partition, out.writes)
        messages = self.outputs(partition, out)
        if not messages:
            return out
        await self.transport.deliver(messages)
        await self.state_log.write(partition, self.stage2.sent(partition), wait=False)
        return out

    def outputs(self, partition: int, out: Stage2Output) -> list[Output]:
        """The unit's outputs as messages: alerts, metrics, dead letters, and internal
        records per target partition (``Message.target``: progress to the partition
        it names, everything else to the partition of its subject)."""
        messages: list[Output] = [
            AlertMessage(a["alert_id"].encode(), orjson.dumps(a)) for a in out.alerts
        ]
        messages += [MetricMessage(m) for m in out.metrics]
        messages += [EvidenceMessage(r) for r in out.evidence]
        messages += [quarantine_letter(q, self.internal_topic, partition) for q in out.quarantined]
        partitions = self.stage2.partitions
        by_partition: dict[int, list[Message]] = {}
        for item in out.items:
            by_partition.setdefault(item.target(partitions), []).append(item)
        for target, chunk in by_partition.items():
            messages += [InternalMessage(target, value) for value in encode_bounded(chunk, None)]
        return messages
