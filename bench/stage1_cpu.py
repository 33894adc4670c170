"""Stage-1 CPU cost per event, in-process: decode, validate, redact, enrich, whole process.

Simulator traffic (its realistic mix, no violations injected, so every event
is valid and clean) encoded as Avro batch records of ``--batch`` events (or
JSON with ``--json``). Each step runs over all the records ``--rounds`` times and prints
the median µs/event (and the min/max of the rounds); ``process`` is the whole
``Stage1.process`` (validate, redact, enrich against a real Redis, route and
encode the internal records) on groups of ``--records`` Kafka records, as the
worker's ``take_events`` hands them over; ``route + encode`` is its last part.
``validate`` is ``Validator.validate`` minus ``decode``. Each line gives wall
time and this process's CPU time (the difference is mostly waiting for Redis).
Redis keys go under a unique prefix in ``--url``'s database and are deleted at
the end.

    .venv/bin/python bench/stage1_cpu.py [--url redis://127.0.0.1:6379/13] [--events 30000]
        [--rounds 7] [--json] [--profile] [--no-gc]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from pipeline.codec import AvroEncoder, encode_json_batch
from pipeline.detectors.engine import DetectionEngine
from pipeline.enrichment import RedisEnricher
from pipeline.enrichment.keys import KeySpace
from pipeline.enrichment.registry import parse_registry, write_identities
from pipeline.flow.route import SUBJECT_RECORD_MAX_BYTES, SubjectRecordEncoder, route
from pipeline.flow.schemas import SchemaResolver
from pipeline.flow.stage1 import SourceRecord, Stage1
from pipeline.flow.validate import Validator
from pipeline.redact import redact_event
from pipeline.simulate import Simulator

START_MS = 1_764_000_000_000


Samples = list[tuple[float, float]]  # (wall µs/event, CPU µs/event) per round


def rounds_us(run: Callable[[], int], rounds: int) -> Samples:
    """Per round: wall and CPU (this process) µs/event; ``run`` returns the events handled."""
    out = []
    for _ in range(rounds):
        wall, cpu = time.perf_counter_ns(), time.process_time_ns()
        n = run()
        out.append(
            ((time.perf_counter_ns() - wall) / n / 1000, (time.process_time_ns() - cpu) / n / 1000)
        )
    return out


async def rounds_us_async(run: Callable[[], Awaitable[int]], rounds: int) -> Samples:
    out = []
    for _ in range(rounds):
        wall, cpu = time.perf_counter_ns(), time.process_time_ns()
        n = await run()
        out.append(
            ((time.perf_counter_ns() - wall) / n / 1000, (time.process_time_ns() - cpu) / n / 1000)
        )
    return out


def show(name: str, samples: Samples) -> float:
    """Prints the median wall µs/event (with min/max) and the median CPU µs/event."""
    walls = [w for w, _ in samples]
    med = statistics.median(walls)
    cpu = statistics.median(c for _, c in samples)
    print(
        f"{name:32s} {med:7.2f} µs/event wall (min {min(walls):.2f}, max {max(walls):.2f}),"
        f" {cpu:6.2f} CPU  {1e6 / med:>9,.0f} ev/s"
    )
    return med


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13"))
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--batch", type=int, default=300, help="events per Kafka record")
    parser.add_argument("--records", type=int, default=4, help="Kafka records per process call")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--json", action="store_true", help="JSON batch records instead of Avro")
    parser.add_argument("--profile", action="store_true", help="cProfile Stage1.process")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-gc", action="store_true", help="cyclic GC off (its share)")
    args = parser.parse_args()

    sim = Simulator(args.seed, start_ms=START_MS, rate=200.0)
    events = sim.events(args.events)
    encode = encode_json_batch if args.json else AvroEncoder().batch
    values = [encode(events[i : i + args.batch]) for i in range(0, len(events), args.batch)]
    size = sum(map(len, values)) / len(events)
    print(
        f"{len(events)} simulator events in {len(values)} {'JSON' if args.json else 'Avro'} "
        f"records of {args.batch} (~{size:.0f} B/event); {args.records} records per process call"
    )

    validator = Validator(SchemaResolver(), 2 * 1024 * 1024 - 4096, 10_000)
    n = len(events)

    def decode() -> int:
        for value in values:
            validator.decode(value)
        return n

    def decode_validate() -> int:
        for value in values:
            validator.validate(value)
        return n

    validated = [e for value in values for e in validator.validate(value).events]
    assert len(validated) == n, f"{n - len(validated)} events rejected"

    def redact() -> int:
        for event in validated:
            redact_event(event)
        return n

    # The bench's own data (simulator, records, validated copies) is long-lived:
    # keep it out of the collector's scans, as a worker's steady state would be.
    gc.collect()
    gc.freeze()
    if args.no_gc:
        gc.disable()
    results: dict[str, float] = {}
    results["decode"] = show("decode (codec)", rounds_us(decode, args.rounds))
    both = show("decode + validate", rounds_us(decode_validate, args.rounds))
    results["validate"] = both - results["decode"]
    print(f"{'  => validate':32s} {results['validate']:7.2f} µs/event")
    results["redact"] = show("redact_event", rounds_us(redact, args.rounds))

    prefix = f"bench-s1:{uuid.uuid4().hex[:10]}:"
    client = redis.Redis.from_url(args.url)
    entries, problems = parse_registry({"identities": sim.registry()})
    assert not problems, problems
    write_identities(client, KeySpace(prefix), entries)
    enricher = RedisEnricher(args.url, key_prefix=prefix)
    try:
        per_call = args.batch * args.records
        batches = [validated[i : i + per_call] for i in range(0, n, per_call)]

        async def enrich() -> int:
            for batch in batches:
                await enricher.apply(batch)
                await enricher.enrich(batch)
            return n

        await enrich()  # first contact: credentials created, caches warm
        results["enrich"] = show(
            "enrich (apply + enrich, Redis)", await rounds_us_async(enrich, args.rounds)
        )
        engine = DetectionEngine()

        def route_encode() -> int:
            for batch in batches:
                encoder = SubjectRecordEncoder(SUBJECT_RECORD_MAX_BYTES)
                for items in route(batch, args.partitions, engine.subject_kinds_for).values():
                    encoder.records(items, START_MS)
            return n

        results["route"] = show("route + encode (enriched)", rounds_us(route_encode, args.rounds))
        print(f"{'sum of steps':32s} {sum(results.values()):7.2f} µs/event")

        stage1 = Stage1(validator, args.partitions, enricher, engine.subject_kinds_for)
        groups = [
            [
                SourceRecord(value, None, "agent.events.v1", 0, i + k)
                for k, value in enumerate(values[i : i + args.records])
            ]
            for i in range(0, len(values), args.records)
        ]

        async def process() -> int:
            handled = 0
            for group in groups:
                handled += (await stage1.process(group)).events
            return handled

        await process()
        show("Stage1.process (all in)", await rounds_us_async(process, args.rounds))
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            await process()
            profiler.disable()
            stats = pstats.Stats(profiler).sort_stats("tottime")
            stats.print_stats(25)
            stats.sort_stats("cumulative").print_stats(30)
    finally:
        await enricher.close()
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])
        client.close()


if __name__ == "__main__":
    asyncio.run(main())
