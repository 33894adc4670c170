"""Stage-2 CPU per event, in-process: internal-record encode, decode, and stage 2's units.

Simulator traffic (its realistic mix, violations included) goes through stage 1
(validate, redact, enrich from an in-memory registry, route) once; the internal
records it produced are then, per round:

* ``encode``: the routed items of each stage-1 call encoded again as internal records;
* ``decode``: every internal record decoded;
* ``stage 2``: a fresh stage 2 and store judge every record, one unit per
  ``--records`` internal records of a partition, as the worker's ``take_events``
  hands them over, with the unit's writes put in the store as the worker's
  ``TableLog`` does (values, not decoded bytes) and its own outputs (metric
  deltas, progress, finding notices) encoded and fed back (decode included),
  until nothing is left.

Prints the median µs/event per step over ``--rounds`` (events = input events).
Task evidence dossiers are on, as in the worker by default; ``--no-evidence`` runs
without them (``GOVPIPE_EVIDENCE=false``).

    .venv/bin/python bench/stage2_cpu.py [--events 20000] [--rounds 5] [--no-evidence] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.codec import AvroEncoder
from pipeline.detectors.engine import DetectionEngine
from pipeline.evidence import EvidenceThresholds
from pipeline.flow.route import (
    SubjectRecordEncoder,
    decode_subject_batch,
    encode_subject_batch,
    stage1_subjects,
)
from pipeline.flow.schemas import SchemaResolver
from pipeline.flow.stage1 import SourceRecord, Stage1
from pipeline.flow.stage2 import Stage2
from pipeline.flow.validate import Validator
from pipeline.simulate import Simulator
from pipeline.simulate.generator import parse_violations
from tests.support.reference_enricher import MemoryEnricher

START_MS = 1_764_000_000_000


class Store(dict[str, Any]):
    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key, default)


class Harness:
    """The part of the bench that follows stage 2's API."""

    def __init__(self, partitions: int, evidence: bool = True) -> None:
        self.partitions = partitions
        self.evidence = evidence
        self.alerts = self.metrics = self.dead = self.dossiers = 0

    def prepare(self, records: list[tuple[int, bytes]]) -> None:
        self.decoded = [decode_subject_batch(v) for _, v in records]

    def encode_all(self) -> None:
        for wm, items in self.decoded:
            with SubjectRecordEncoder() as encoder:
                encoder.records(items, wm)

    def decode_all(self, records: list[tuple[int, bytes]]) -> None:
        for _, value in records:
            decode_subject_batch(value)

    def run(self, records: list[tuple[int, bytes]], per_unit: int) -> None:
        engine = DetectionEngine()
        th = EvidenceThresholds.from_specs(engine.specs) if self.evidence else None
        stage2 = Stage2(engine, self.partitions, 300_000, "bench", evidence=th)
        store = Store()
        queues: dict[int, deque[bytes]] = {p: deque() for p in range(self.partitions)}
        for partition, value in records:
            queues[partition].append(value)
        offsets = dict.fromkeys(range(self.partitions), 0)
        self.alerts = self.metrics = self.dossiers = 0
        while self.flush(stage2, queues) or any(queues.values()):
            for partition, queue in queues.items():
                unit: list[Any] = []
                while queue and len(unit) < per_unit:
                    wm, items = decode_subject_batch(queue.popleft())
                    unit.append((offsets[partition], wm, items))
                    offsets[partition] += 1
                if not unit:
                    continue
                out = stage2.process_unit(store, partition, unit)
                # as TableLog.write: the store holds the values, not decoded bytes
                for key, value, _ in out.writes + stage2.sent(partition):
                    store[key] = value
                self.alerts += len(out.alerts)
                self.metrics += len(out.metrics)
                self.dossiers += len(out.evidence)
                self.enqueue(queues, out.items)

    def enqueue(self, queues: dict[int, deque[bytes]], items: list[Any]) -> None:
        """Stage 2's own outputs, one internal record per target partition."""
        by_target: dict[int, list[Any]] = {}
        for item in items:
            by_target.setdefault(item.target(self.partitions), []).append(item)
        for target, chunk in by_target.items():
            queues[target].append(encode_subject_batch(chunk, None))

    def flush(self, stage2: Stage2, queues: dict[int, deque[bytes]]) -> bool:
        """Once the queues are empty, the progress the rate limit held back, as the
        worker's once-a-second flush sends it (tasks wait for it); True if any."""
        if any(queues.values()):
            return False
        every, stage2.progress_every_s = stage2.progress_every_s, 0.0
        held = stage2.held_progress()
        stage2.progress_every_s = every
        stage2.flushed(held)
        self.enqueue(queues, held)
        return bool(held)


def rounds_us(run: Callable[[], int], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        cpu = time.process_time_ns()
        n = run()
        out.append((time.process_time_ns() - cpu) / n / 1000)
    return out


def show(name: str, samples: list[float]) -> float:
    med = statistics.median(samples)
    print(
        f"{name:28s} {med:7.2f} µs/event CPU (min {min(samples):.2f}, max {max(samples):.2f})"
        f"  {1e6 / med:>9,.0f} ev/s"
    )
    return med


async def stage1_records(args: Any) -> tuple[int, list[tuple[int, bytes]]]:
    sim = Simulator(
        args.seed, start_ms=START_MS, rate=200.0, violations=parse_violations(None, 0.01)
    )
    events = sim.events(args.events)
    identities = {e["identity_id"]: e for e in sim.registry()}
    engine = DetectionEngine()
    stage1 = Stage1(
        Validator(SchemaResolver(), 2 * 1024 * 1024, 10_000),
        args.partitions,
        MemoryEnricher(identities=identities),
        stage1_subjects(engine.subject_kinds_for, args.evidence),
        input_partitions=1,
    )
    stage1.inputs.assign({0}, 0.0)
    encode = AvroEncoder().batch
    out: list[tuple[int, bytes]] = []
    for offset, i in enumerate(range(0, len(events), args.batch)):
        record = SourceRecord(encode(events[i : i + args.batch]), None, "events", 0, offset)
        result = await stage1.process([record])
        assert not result.dead_letters
        out += result.subject_records
    return len(events), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=300, help="events per input record")
    parser.add_argument("--records", type=int, default=8, help="internal records per unit")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--no-evidence",
        dest="evidence",
        action="store_false",
        help="without task dossiers (GOVPIPE_EVIDENCE=false): no task copies, no dossier state",
    )
    args = parser.parse_args()
    n, records = asyncio.run(stage1_records(args))
    size = sum(len(v) for _, v in records)
    print(
        f"{n} simulator events in {len(records)} internal records "
        f"({size / n:.0f} B/event), {args.partitions} partitions, "
        f"{args.records} records per unit, evidence {'on' if args.evidence else 'off'}"
    )
    harness = Harness(args.partitions, args.evidence)
    harness.prepare(records)
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)  # as the worker (pipeline/worker.py)

    def encode() -> int:
        harness.encode_all()
        return n

    def decode() -> int:
        harness.decode_all(records)
        return n

    def stage2() -> int:
        harness.run(records, args.records)
        return n

    total = show("encode internal records", rounds_us(encode, args.rounds))
    total += show("decode internal records", rounds_us(decode, args.rounds))
    total += show("stage 2 units (+ feedback)", rounds_us(stage2, args.rounds))
    print(f"{'sum':28s} {total:7.2f} µs/event CPU  {1e6 / total:>9,.0f} ev/s")
    print(
        f"alerts {harness.alerts}, metric records {harness.metrics}, dlq {harness.dead}, "
        f"dossier records {harness.dossiers}"
    )
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        harness.run(records, args.records)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
