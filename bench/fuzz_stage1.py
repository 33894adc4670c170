"""100,000 hostile records through stage 1 in-process, each alone, timed (issue 15, item 4).

The records come from ``tests/support/hostile.py`` (deterministic by ``--seed``):
random bytes, mutated Avro and JSON events and batches, wrong types, values at
and past every limit, deep nesting, Unicode edge cases, huge maps, batches with
bad events. Each goes through a real ``Stage1`` (real validator, local schema
catalogue, default detectors' routing, in-memory enricher) on its own. Prints
counts, dead letters by code, per-record p50/p99/max, the slowest records, and
the time per event or dead letter of the large batches (whose cost grows with
their size: a record of 10,000 events cannot take 50 ms at ~9 µs an event).
Exits 1 if anything raised, a dead letter had no contract code, or an internal
record did not decode.

    .venv/bin/python bench/fuzz_stage1.py [--count 100000] [--seed 15]

``tests/unit/test_fuzz_stage1.py`` runs a smaller count of the same generator.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.hostile import MAX_RECORD_BYTES, SMALL_ITEMS, fuzz_stage1, timing_problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    started = time.perf_counter()
    report = asyncio.run(fuzz_stage1(args.seed, args.count))
    wall = time.perf_counter() - started
    print(f"seed {args.seed}: {args.count} records in {wall:.1f} s")
    print(report.summary())
    print("dead letters by code:", dict(report.codes.most_common()))
    print("records by kind:", dict(sorted(report.kinds.items())))
    small = report.max_s_up_to(SMALL_ITEMS, MAX_RECORD_BYTES)
    over = sum(t > 0.050 for t in report.times_s)
    print(
        f"per record: p50 {report.percentile(0.5) * 1e3:.3f} ms, p99 "
        f"{report.percentile(0.99) * 1e3:.2f} ms, p99.9 {report.percentile(0.999) * 1e3:.2f} ms,"
        f" max {report.max_s * 1e3:.1f} ms; {over} records over 50 ms"
    )
    print(
        f"records within the size limit of <= {SMALL_ITEMS} events + dead letters: max "
        f"{small * 1e3:.2f} ms; larger batches: max {report.max_us_per_item(SMALL_ITEMS):.1f} µs"
        f" per event or dead letter; records over the size limit: max "
        f"{report.max_ms_per_mb(MAX_RECORD_BYTES):.1f} ms per MB"
    )
    for t, index, kind, size, items in report.slowest[:10]:
        print(f"  slow: #{index} {kind}: {t * 1e3:.1f} ms, {size} bytes, {items} items")
    small_slow = [s for s in report.slowest if s[4] <= SMALL_ITEMS and s[3] <= MAX_RECORD_BYTES]
    for t, index, kind, size, items in small_slow[:10]:
        print(f"  slow small: #{index} {kind}: {t * 1e3:.1f} ms, {size} bytes, {items} items")
    for problem in report.problems[:20]:
        print("PROBLEM", problem)
    slow = timing_problems(report)
    for problem in slow:
        print("TOO SLOW", problem)
    return 1 if report.problems or slow else 0


if __name__ == "__main__":
    sys.exit(main())
