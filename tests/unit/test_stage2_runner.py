"""Stage 2's unit/rewind/delivery protocol (flow/stage2_runner.py) without Kafka.

A dict stands in for the Table (written from the changelog bytes, as a recovery
reads them) and a list for the topics; the log of calls shows the order.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pipeline.detectors.engine import DetectionEngine
from pipeline.detectors.registry import all_detectors
from pipeline.dlq import DeadLetter
from pipeline.flow.messages import MetricDelta, Progress
from pipeline.flow.route import decode_subject_batch, encode_subject_batch, partition_for, route
from pipeline.flow.stage2 import PARTITION_KEY, Stage2, Write, apply_writes
from pipeline.flow.stage2_runner import (
    MIN_UNIT_ITEMS,
    AlertMessage,
    InternalMessage,
    InternalRecord,
    Output,
    Slicer,
    Stage2Runner,
    UnitSizer,
    units,
)
from tests.unit.detectors.factory import enriched
from tests.unit.test_quarantine import BOOM

T0 = 1_764_000_000_000
LATENESS = 60_000
PARTITIONS = 3


class Crash(Exception):
    pass


class Log:
    """The Table's store and changelog; ``calls`` records what happened, in order."""

    def __init__(self, calls: list[tuple[Any, ...]], store: dict[str, Any] | None = None):
        self.calls = calls
        self.store: dict[str, Any] = {} if store is None else store

    def get(self, key: str) -> Any:
        return self.store.get(key)

    def keys(self) -> Any:
        return self.store.keys()

    async def write(self, partition: int, writes: list[Write], wait: bool = True) -> None:
        if writes:
            apply_writes(self.store, writes)
            self.calls.append(("write", partition, wait, [w[0] for w in writes]))


class Topics:
    def __init__(self, calls: list[tuple[Any, ...]], crash: bool = False) -> None:
        self.calls = calls
        self.crash = crash
        self.sent: list[Output] = []

    async def seek(self, partition: int, offset: int) -> None:
        self.calls.append(("seek", partition, offset))

    async def deliver(self, messages: list[Output]) -> None:
        if self.crash:
            raise Crash
        self.sent += messages
        self.calls.append(("deliver", len(messages)))


def runner(
    store: dict[str, Any] | None = None, crash: bool = False, max_items: int = 20_000
) -> tuple[Stage2Runner, list[tuple[Any, ...]], Topics, Log]:
    calls: list[tuple[Any, ...]] = []
    engine = DetectionEngine(detectors=[*all_detectors(), BOOM])
    log = Log(calls, store)
    topics = Topics(calls, crash)
    stage = Stage2(engine, PARTITIONS, LATENESS, "test")
    return Stage2Runner(stage, log, topics, "internal", max_items), calls, topics, log


def action(event_id: str, t: int, identity: str = "agent-r") -> dict[str, Any]:
    return enriched("action", t, event_id=event_id, policy_decision=None, identity_id=identity)


def records_of(batches: list[list[dict[str, Any]]]) -> list[InternalRecord]:
    """Internal records as stage 1 writes them, offsets per partition."""
    engine = DetectionEngine()
    offsets = dict.fromkeys(range(PARTITIONS), 0)
    out = []
    for events in batches:
        wm = max(e["event_time"] for e in events)
        for partition, items in sorted(route(events, PARTITIONS, engine.subject_kinds_for).items()):
            out.append(
                InternalRecord(partition, offsets[partition], encode_subject_batch(items, wm))
            )
            offsets[partition] += 1
    return out


def test_units_group_per_partition_in_offset_order_and_are_bounded() -> None:
    records = records_of([[action(f"e{i}", T0 + i)] for i in range(6)])
    grouped = units(records)
    assert set(grouped) == {r.partition for r in records}
    for partition, chunks in grouped.items():
        assert len(chunks) == 1
        assert [r[0] for r in chunks[0]] == [r.offset for r in records if r.partition == partition]
    small = units(records, max_items=1)
    assert all(len(chunk) == 1 for chunks in small.values() for chunk in chunks)


def test_state_is_written_before_outputs_then_the_unit_is_marked_sent() -> None:
    run, calls, topics, log = runner()
    asyncio.run(run.handle(records_of([[action("e1", T0)]])))
    kinds = [c[0] for c in calls]
    assert kinds[:3] == ["write", "deliver", "write"], calls
    first, sent = calls[0], calls[2]
    assert first[2] is True and any(k.startswith("__partition__") for k in first[3])
    assert sent[2] is False and sent[3] == [
        first[3][[*first[3]].index(PARTITION_KEY.format(first[1]))]
    ]
    alerts = [m for m in topics.sent if isinstance(m, AlertMessage)]
    assert alerts and all(b'"detector":"' in m.value for m in alerts)
    assert log.store[PARTITION_KEY.format(first[1])]["out"] == {"sent": True}


def test_internal_outputs_go_to_their_partition() -> None:
    run, _, topics, _ = runner()
    batches = [[action(f"e{i}", T0 + i * 30_000, f"agent-{i % 4}")] for i in range(10)]
    asyncio.run(run.handle(records_of(batches)))
    internal = [m for m in topics.sent if isinstance(m, InternalMessage)]
    assert internal
    for message in internal:
        for item in decode_subject_batch(message.value)[1]:
            assert item.target(PARTITIONS) == message.partition
            if isinstance(item, Progress):
                assert item.to == message.partition
            elif isinstance(item, MetricDelta):
                assert partition_for(f"metrics:{item.dimension}", PARTITIONS) == message.partition


def test_a_quarantined_copy_is_a_dead_letter_from_the_internal_topic() -> None:
    run, _, topics, _ = runner()
    asyncio.run(run.handle(records_of([[action("bad-1", T0)]])))
    letters = [m for m in topics.sent if isinstance(m, DeadLetter)]
    assert len(letters) == 1
    headers = dict(letters[0].headers)
    assert headers["error.code"] == b"detector_error" and headers["source.topic"] == b"internal"


def test_outputs_lost_in_a_crash_are_resent_as_computed() -> None:
    records = records_of([[action("e1", T0), action("bad-2", T0 + 1)]])
    crashed, calls, _, log = runner(crash=True)
    with pytest.raises(Crash):
        asyncio.run(crashed.handle(records))
    assert [c[0] for c in calls] == ["write"]
    again, _, topics, _ = runner(store=log.store)
    asyncio.run(again.handle(records))  # the consumer replays the uncommitted records
    reference, _, ref_topics, _ = runner()
    asyncio.run(reference.handle(records))

    def shape(sent: list[Output]) -> list[Any]:
        return sorted(repr(m) for m in sent if not isinstance(m, InternalMessage))

    assert shape(topics.sent) == shape(ref_topics.sent) and topics.sent


def test_input_resumed_past_the_state_is_sought_back_and_buffered_records_skipped() -> None:
    records = records_of([[action(f"e{i}", T0 + i)] for i in range(6)])
    partition = records[0].partition
    mine = [r for r in records if r.partition == partition]
    first, _, _, log = runner()
    asyncio.run(first.handle(mine[:2]))  # state covers offsets 0, 1
    restarted, calls, topics, _ = runner(store=log.store)
    asyncio.run(restarted.handle(mine[4:]))  # offsets 2, 3 were committed, not kept
    assert calls == [("seek", partition, 2)] and not topics.sent
    asyncio.run(restarted.handle(mine[2:]))
    assert restarted.stage2.stats.offset_gaps == 1 and topics.sent


def test_units_are_sized_to_the_time_budget_from_the_units_before() -> None:
    sizer = UnitSizer(budget_s=0.1, max_items=20_000)
    first = sizer.items()
    assert MIN_UNIT_ITEMS <= first <= 20_000
    sizer.timed(1_000, 0.2)  # 200 µs an item: 500 items fill 0.1 s
    assert sizer.items() == 500
    sizer.timed(500, 0.025)  # faster now: the average of the two costs
    assert sizer.items() == int(0.1 / ((200e-6 + 50e-6) / 2))
    sizer.timed(MIN_UNIT_ITEMS - 1, 100.0)  # too small to time: ignored
    assert sizer.items() == 800
    sizer.timed(1_000, 1_000.0)  # very slow: never below the minimum
    assert sizer.items() == MIN_UNIT_ITEMS
    fast = UnitSizer(budget_s=0.1, max_items=20_000)
    fast.timed(10_000, 0.001)
    assert fast.items() == 20_000  # nor above the maximum


def test_the_slicer_decodes_each_record_once_and_keeps_whole_records() -> None:
    records = records_of([[action(f"e{i}", T0 + i)] for i in range(12)])
    mine = [r for r in records if r.partition == records[0].partition]
    sizes = [len(decode_subject_batch(r.value)[1]) for r in mine]
    slicer = Slicer(mine)
    taken: list[int] = []
    while slicer:
        unit, items = slicer.take(max(sizes) + 1)
        assert items == sum(len(r[2]) for r in unit) and unit
        taken += [r[0] for r in unit]
    assert taken == [r.offset for r in mine]


def test_a_delivered_unit_does_not_outlive_itself() -> None:
    """A backlog's take holds hundreds of units: keeping their outputs until the take
    ended grew a worker to GBs. While the third unit runs, the first two are gone."""
    import gc

    from pipeline.flow.stage2 import Stage2Output

    batches = [[action(f"e{i}", T0 + i * 20_000, f"agent-{i % 3}")] for i in range(30)]
    records = records_of(batches)
    run, _, _, _ = runner(max_items=1)
    alive: list[int] = []
    real = run.run_unit

    async def counting(*args: Any, **kwargs: Any) -> Any:
        gc.collect()
        alive.append(sum(isinstance(o, Stage2Output) for o in gc.get_objects()))
        return await real(*args, **kwargs)

    run.run_unit = counting  # type: ignore[method-assign]
    assert asyncio.run(run.handle(records)) == []
    assert len(alive) > 10  # many units
    assert max(alive) <= 1, alive  # at most the one just delivered, not yet collected


def test_a_batch_cut_into_many_units_gives_the_same_outputs_as_one_unit() -> None:
    batches = [[action(f"e{i}", T0 + i * 20_000, f"agent-{i % 3}")] for i in range(30)]
    batches.append([action("bad-3", T0 + 31 * 20_000)])
    records = records_of(batches)
    whole, _, whole_topics, _ = runner()
    asyncio.run(whole.handle(records))
    sliced, _, sliced_topics, _ = runner(max_items=2)
    asyncio.run(sliced.handle(records))
    assert sliced.stage2.stats.units > whole.stage2.stats.units >= 1

    def findings(sent: list[Output]) -> list[Any]:
        return sorted(repr(m) for m in sent if isinstance(m, AlertMessage | DeadLetter))

    assert findings(sliced_topics.sent) == findings(whole_topics.sent)
    assert any(isinstance(m, AlertMessage) for m in whole_topics.sent)


def test_a_stopping_worker_leaves_the_rest_of_the_batch_to_the_next_owner() -> None:
    batches = [[action(f"e{i}", T0 + i * 20_000)] for i in range(30)]
    records = records_of(batches)
    partition = records[0].partition
    mine = [r for r in records if r.partition == partition]
    reference, _, ref_topics, _ = runner()
    asyncio.run(reference.handle(mine))
    checks = iter([False, False, False])  # the partition, then its first two units
    stopped, _, topics, log = runner(max_items=2)
    stopped.stopping = lambda: next(checks, True)
    done = asyncio.run(stopped.handle(mine, collect=True))
    assert len(done) == 2 and stopped.abandoned == 1
    entry = log.store[PARTITION_KEY.format(partition)]
    assert mine[0].offset < entry["done"] < mine[-1].offset  # only what was written
    # faust acknowledged the whole batch: the next owner resumes past it, is sought
    # back to the first offset the state lacks and reads the rest again
    restarted, calls, next_topics, _ = runner(store=log.store)
    asyncio.run(restarted.handle(mine[-1:]))
    assert calls == [("seek", partition, entry["done"] + 1)]
    asyncio.run(restarted.handle([r for r in mine if r.offset > entry["done"]]))

    def findings(sent: list[Output]) -> list[Any]:
        return sorted(repr(m) for m in sent if isinstance(m, AlertMessage))

    assert findings(ref_topics.sent)
    assert findings(topics.sent + next_topics.sent) == findings(ref_topics.sent)


def test_held_progress_is_flushed_between_units_never_inside_one() -> None:
    """The worker's once-a-second flush sends the progress the rate limit held back,
    and never while a unit is being written or delivered: a partition's progress must
    not overtake the outputs of its units before it."""
    now = [1000.0]
    run, calls, _, _ = runner()
    run.stage2.clock = lambda: now[0]
    records = records_of([[action("e1", T0, "agent-1")], [action("e2", T0 + 60_000, "agent-1")]])
    partition = records[0].partition
    asyncio.run(run.handle(records[:1]))
    now[0] += 0.1
    released = asyncio.Event()

    class Slow(Topics):
        async def deliver(self, messages: list[Output]) -> None:
            calls.append(("deliver-start", len(messages)))
            await released.wait()
            await super().deliver(messages)

    run.transport = slow = Slow(calls)

    async def go() -> int:
        unit = asyncio.create_task(run.handle(records[1:]))
        await asyncio.sleep(0)  # the unit is now waiting in its delivery
        now[0] += 5
        flush = asyncio.create_task(run.flush())
        await asyncio.sleep(0.01)
        assert calls[-1][0] == "deliver-start"  # the flush waits for the unit
        released.set()
        await unit
        return await flush

    sent = asyncio.run(go())
    assert sent == PARTITIONS
    flushed = slow.sent[-sent:]
    progress = [i for m in flushed for i in decode_subject_batch(m.value)[1]]  # type: ignore[union-attr]
    assert {(p.to, p.source, p.newest) for p in progress} == {
        (target, partition, T0 + 60_000) for target in range(PARTITIONS)
    }
    assert asyncio.run(run.flush()) == 0  # nothing held any more


def test_a_failed_flush_leaves_the_progress_held_for_the_next_round() -> None:
    now = [1000.0]
    run, calls, _, _ = runner()
    run.stage2.clock = lambda: now[0]
    records = records_of([[action("e1", T0, "agent-1")], [action("e2", T0 + 60_000, "agent-1")]])
    asyncio.run(run.handle(records[:1]))
    now[0] += 0.1
    asyncio.run(run.handle(records[1:]))  # its progress is held back
    now[0] += 5
    run.transport = Topics(calls, crash=True)
    with pytest.raises(Crash):
        asyncio.run(run.flush())
    run.transport = topics = Topics(calls)
    assert asyncio.run(run.flush()) == PARTITIONS
    progress = [i for m in topics.sent for i in decode_subject_batch(m.value)[1]]  # type: ignore[union-attr]
    assert {p.newest for p in progress} == {T0 + 60_000}
    assert run.stage2.stats.progress_flushed == 1
