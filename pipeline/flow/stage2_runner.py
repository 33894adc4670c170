"""Stage 2's unit, rewind and delivery protocol, without Kafka (the worker wires it).

One call of ``Stage2Runner.handle`` takes the internal records one
``take_events`` batch brought and, per partition:

1. asks ``Stage2.rewind`` whether the input resumed past what the recovered state
   covers: then the partition is sought back (``Transport.seek``) and the records
   already buffered are skipped (they come again);
2. cuts the partition's records of the batch into *units*, whole records in offset
   order, each sized (``UnitSizer``) so that decoding and judging it takes about
   ``UNIT_BUDGET_S`` of the event loop, never more than ``UNIT_MAX_ITEMS`` items (a
   unit's outputs and redo go in single records); a take of a backlog holds hundreds
   of thousands of items, and judged as one unit it kept the loop, and so heartbeats,
   commits, ``/metrics`` and shutdown, waiting for seconds;
3. judges each unit (``Stage2.process_unit``), writes its changelog writes and waits
   for them (``StateLog.write``): **state before outputs**, because an alert's
   activity is decided by the state and a restart re-sends the unit's outputs from it;
4. delivers the unit's outputs (``Transport.deliver`` returns once they are
   acknowledged): alerts, metric records, evidence dossiers, dead letters and
   internal messages for other stage-2 partitions (metric deltas, progress, finding
   notices);
5. marks the unit sent, queued and not awaited: later writes of the partition queue
   behind it, and if a crash loses it the restart re-sends outputs already delivered
   (at least once; outputs are idempotent by key);
6. yields to the event loop, and stops taking units when the worker is stopping
   (``stopping``): the rest of the batch is left as a crash would leave it. faust
   acknowledges it with the batch, but the partition entry's ``done`` covers only the
   units written, so the partition's next owner reads it again through step 1.

The runner never touches faust: ``pipeline/app.py`` gives it the Table's changelog
(``flow/tablelog.py``) and a transport that seeks the consumer and sends to topics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
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

log = logging.getLogger(__name__)

#: Wall-clock time a unit should keep the event loop busy: decoding its records,
#: judging them and building its writes and outputs all run without an await.
UNIT_BUDGET_S = 0.1
#: The size of the first unit, before one has been timed (~100 µs an item measured).
FIRST_UNIT_ITEMS = 1_000
#: The smallest unit the sizer asks for: below this a unit's fixed costs (partition
#: entry, changelog produce, outputs) dominate; smaller units are not timed either.
MIN_UNIT_ITEMS = 100


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
    ``max_items`` items (a record alone may have more), offsets in order (what
    ``Stage2Runner.handle`` does a unit at a time, with a size per unit)."""
    by_partition: dict[int, list[InternalRecord]] = {}
    for record in records:
        by_partition.setdefault(record.partition, []).append(record)
    out: dict[int, list[list[Record]]] = {}
    for partition, records_of in by_partition.items():
        slicer = Slicer(records_of)
        while slicer:
            out.setdefault(partition, []).append(slicer.take(max_items)[0])
    return out


class UnitSizer:
    """How many items the next unit may take so that it keeps the loop busy for about
    ``budget_s``: the budget over the cost per item of the units timed before (a
    moving average of wall-clock time, so a loaded machine gets smaller units)."""

    def __init__(self, budget_s: float = UNIT_BUDGET_S, max_items: int = UNIT_MAX_ITEMS) -> None:
        self.budget_s = budget_s
        self.max_items = max_items
        #: seconds per item, None until a unit of at least MIN_UNIT_ITEMS was timed
        self.per_item: float | None = None

    def items(self) -> int:
        if self.per_item is None:
            return min(self.max_items, FIRST_UNIT_ITEMS)
        return min(self.max_items, max(MIN_UNIT_ITEMS, int(self.budget_s / self.per_item)))

    def timed(self, items: int, seconds: float) -> None:
        if items < MIN_UNIT_ITEMS:
            return
        cost = seconds / items
        self.per_item = cost if self.per_item is None else (self.per_item + cost) / 2


class Slicer:
    """One partition's records of a batch (offset order), decoded a unit at a time."""

    def __init__(self, records: list[InternalRecord]) -> None:
        self.records = records
        self.index = 0
        #: the record decoded that did not fit in the last unit: the next one's first
        self.ahead: Record | None = None

    def __bool__(self) -> bool:
        return self.ahead is not None or self.index < len(self.records)

    def take(self, max_items: int) -> tuple[list[Record], int]:
        """(the next unit, its items): whole records up to ``max_items`` items (a
        record alone may have more)."""
        unit: list[Record] = []
        size = 0
        while self:
            if self.ahead is not None:
                record, self.ahead = self.ahead, None
            else:
                value = self.records[self.index]
                upstream_wm, items = decode_subject_batch(value.value)
                record = (value.offset, upstream_wm, items)
                self.index += 1
            if unit and size + len(record[2]) > max_items:
                self.ahead = record
                break
            unit.append(record)
            size += len(record[2])
        return unit, size


def never() -> bool:
    return False


class Stage2Runner:
    def __init__(
        self,
        stage2: Stage2,
        state_log: StateLog,
        transport: Transport,
        internal_topic: str,
        max_items: int = UNIT_MAX_ITEMS,
        stopping: Callable[[], bool] = never,
        budget_s: float = UNIT_BUDGET_S,
    ) -> None:
        self.stage2 = stage2
        self.state_log = state_log
        self.transport = transport
        #: the internal topic's name, the source of dead letters raised in stage 2
        self.internal_topic = internal_topic
        self.max_items = max_items
        self.sizer = UnitSizer(budget_s, max_items)
        #: true once the worker is stopping: no further unit is taken
        self.stopping = stopping
        #: batches left unfinished because the worker was stopping (read again later)
        self.abandoned = 0
        #: a unit (judge, write, deliver) and a progress flush never interleave: a
        #: partition's progress must not overtake the outputs of its units before it
        self._busy = asyncio.Lock()

    async def handle(
        self, records: list[InternalRecord], collect: bool = False
    ) -> list[Stage2Output]:
        """One ``take_events`` batch of the internal topic (module doc, steps 1-6).

        With ``collect`` (tests, harnesses) it returns each unit's output once
        delivered; the worker keeps none: a backlog's take holds hundreds of units,
        and keeping their outputs (serialised states, redo chunks, decoded items)
        until the take ended grew a worker to GBs (tracemalloc: 590 MB of state bytes
        alone in a 60,000-event backlog)."""
        done: list[Stage2Output] = []
        units = 0
        by_partition: dict[int, list[InternalRecord]] = {}
        for record in records:
            by_partition.setdefault(record.partition, []).append(record)
        for partition, records_of in by_partition.items():
            if self.stopping():
                return self.abandon(done, units, records)
            skip, seek_to = self.stage2.rewind(self.state_log, partition, records_of[0].offset)
            if seek_to is not None:
                await self.transport.seek(partition, seek_to)
            if skip:
                continue
            slicer = Slicer(records_of)
            while slicer:
                if self.stopping():
                    return self.abandon(done, units, records)
                started = time.perf_counter()
                unit, items = slicer.take(self.sizer.items())
                out = await self.run_unit(partition, unit, items, started)
                units += 1
                if collect:
                    done.append(out)
                del unit, out  # nothing of a delivered unit outlives it
                # The unit's writes and sends may all complete without suspending.
                await asyncio.sleep(0)
        return done

    def abandon(
        self, done: list[Stage2Output], units: int, records: list[InternalRecord]
    ) -> list[Stage2Output]:
        self.abandoned += 1
        log.info(
            "stopping: %d units of this batch of %d internal records done, "
            "the rest is read again by the partitions' next owner",
            units,
            len(records),
        )
        return done

    async def run_unit(
        self, partition: int, records: list[Record], items: int = 0, started: float | None = None
    ) -> Stage2Output:
        """Judge one unit, write its state, deliver its outputs (steps 3-5); the time
        from ``started`` (before its records were decoded) to its writes sizes the
        next unit."""
        async with self._busy:
            out = self.stage2.process_unit(self.state_log, partition, records)
            if started is not None:
                self.sizer.timed(items, time.perf_counter() - started)
            await self.state_log.write(partition, out.writes)
            messages = self.outputs(partition, out)
            if not messages:
                return out
            await self.transport.deliver(messages)
            await self.state_log.write(partition, self.stage2.sent(partition), wait=False)
            return out

    async def flush(self) -> int:
        """Send the progress the rate limit held back (``Stage2.held_progress``), between
        units; the worker calls it once a second. Progress is a maximum at its target,
        so a copy sent again after a crash changes nothing. Returns the records sent."""
        async with self._busy:
            held = self.stage2.held_progress()
            if not held:
                return 0
            messages = self.internal(held)
            await self.transport.deliver(messages)
            self.stage2.flushed(held)
            return len(messages)

    async def flush_forever(self, interval_s: float) -> None:
        """``flush`` every ``interval_s`` until cancelled (a faust task: a timer would
        warn "overlapping" whenever it waits for a unit). A failed delivery leaves the
        progress held, for the next round."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("held-back stage-2 progress not sent (%s); tried again", exc)

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
        return messages + self.internal(out.items)

    def internal(self, items: list[Message]) -> list[Output]:
        """Internal records per target partition, each target's items in order."""
        partitions = self.stage2.partitions
        by_partition: dict[int, list[Message]] = {}
        for item in items:
            by_partition.setdefault(item.target(partitions), []).append(item)
        messages: list[Output] = []
        for target, chunk in by_partition.items():
            messages += [InternalMessage(target, value) for value in encode_bounded(chunk, None)]
        return messages
