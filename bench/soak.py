"""Soak: state over days of event time through one real worker (issue 15; prints figures).

  python bench/soak.py [--events 1000000] [--days 28] [--every 100000]

Simulated traffic (``pipeline/simulate``, with injected violations so alerts and their
dedup bookkeeping exist) covering ``--days`` of event time goes to one ``govpipe
worker`` (stage 1 + stage 2) on the embedded broker, ``--every`` events at a time.
After each chunk the bench waits until the worker has handled it (stage 1 read every
event, stage 2's counters still for 3 s) and prints:

  entries    ``govpipe_state_entries``: the stage-2 Table's entries in the worker
  rss        the worker's resident memory (``/proc/<pid>/status`` VmRSS)
  changelog  records appended to the Table's changelog topic (end offsets; Tansu, the
             embedded broker, does not compact) and what compaction would keep: the
             live keys and their bytes, read by a tail of the changelog in this process
             (the last value per key; a tombstone removes it)
  expired    ``govpipe_state_expired_total``

At the end it says whether, after the warm-up (the longest horizon a finished subject
is kept: 7 days of SP-03 and of SP-02/the dossier, plus a day), entries, RSS and the
compacted changelog stayed flat within 10% (max/min over the checkpoints after it).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# the bench's Redis keys get a prefix of their own; db 5 unless REDIS_URL says otherwise
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/5")

import bench.throughput as tp
from pipeline.admin import create_topics
from pipeline.codec import AvroEncoder
from pipeline.embedded import EmbeddedBroker
from pipeline.simulate import Simulator, parse_violations
from tests.support.kafka import produce

DAY_MS = 24 * 3600 * 1000
#: Event time after which finished subjects are deleted as fast as they are made.
WARM_UP_DAYS = 8
FLAT = 0.10


class ChangelogTail(threading.Thread):
    """Reads the changelog from the start and keeps the last value size per key:
    what a compacted changelog (Apache Kafka's ``cleanup.policy=compact``) would hold."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.topic = topic
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"soak-tail-{uuid.uuid4()}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        md = self.consumer.list_topics(topic, timeout=10)
        self.partitions = sorted(md.topics[topic].partitions)
        self.consumer.assign([TopicPartition(topic, p, 0) for p in self.partitions])
        self.live: dict[tuple[int, bytes], int] = {}
        self.read = dict.fromkeys(self.partitions, 0)
        self.records = 0
        self.lock = threading.Lock()
        self.stopped = False
        self.meta = Consumer({"bootstrap.servers": bootstrap, "group.id": "soak-meta"})

    def run(self) -> None:
        while not self.stopped:
            for m in self.consumer.consume(5000, timeout=0.5):
                if m.error():
                    continue
                key = (m.partition(), m.key() or b"")
                value = m.value()
                with self.lock:
                    if value is None:
                        self.live.pop(key, None)
                    else:
                        self.live[key] = len(key[1]) + len(value)
                    self.read[m.partition()] = m.offset() + 1
                    self.records += 1

    def by_kind(self) -> dict[str, int]:
        """Live bytes by key kind (``task``, ``credential``, ``__redo__``, ...)."""
        out: dict[str, int] = {}
        with self.lock:
            for (_, key), size in self.live.items():
                kind = key.strip(b'"').split(b":", 1)[0].decode(errors="replace")
                out[kind] = out.get(kind, 0) + size
        return out

    def ends(self) -> dict[int, int]:
        return {
            p: self.meta.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)[1]
            for p in self.partitions
        }

    def caught_up(self, max_s: float = 600) -> tuple[int, int, int]:
        """(records on the topic, live keys, live bytes) once the tail read to the end
        offsets as of now."""
        ends = self.ends()
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline:
            with self.lock:
                if all(self.read[p] >= ends[p] for p in ends):
                    return sum(ends.values()), len(self.live), sum(self.live.values())
            time.sleep(0.2)
        raise RuntimeError(f"the changelog tail did not reach {ends} (at {self.read})")


def _proc_mb(path: str, field: str) -> float:
    """A ``kB`` field of a /proc status-style file, in MB (NaN if absent)."""
    for line in Path(path).read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb(pid: int | None) -> float:
    return float("nan") if pid is None else _proc_mb(f"/proc/{pid}/status", "VmRSS")


def mem_available_mb() -> float:
    return _proc_mb("/proc/meminfo", "MemAvailable")


def topic_end(meta: Consumer, topic: str) -> int:
    """Records on ``topic``: the sum of its partitions' end offsets."""
    partitions = meta.list_topics(topic, timeout=10).topics[topic].partitions
    return sum(
        meta.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions
    )


def committed(group: Consumer, topic: str) -> int:
    """The worker group's committed offsets on ``topic``, summed (kept across restarts)."""
    partitions = group.list_topics(topic, timeout=10).topics[topic].partitions
    offsets = group.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
    return sum(max(0, tp.offset) for tp in offsets)


class Worker:
    """The worker under test; restarted when it stalls (``wait_handled``)."""

    def __init__(self, settings: Any, log: Path) -> None:
        self.settings, self.log = settings, log
        self.restarts = 0
        self.proc = tp.start_worker(settings, log)

    def restart(self) -> None:
        tp.stop_worker(self.proc)
        self.restarts += 1
        self.log = self.log.with_name(f"worker-{self.restarts}.log")
        self.proc = tp.start_worker(self.settings, self.log)


def wait_handled(
    worker: Worker, group: Consumer, stall_s: float = 90.0, max_s: float = 1800.0
) -> dict:
    """Until the worker group has committed the input topic and the internal topic to
    their end offsets (stage 2's own progress and deltas included), unchanged for 3 s,
    then a scrape of its /metrics. A worker that makes no progress for ``stall_s``
    with input left is restarted (a stall of the consumer was seen on Tansu, see the
    README): the figures then include a recovery from the changelog."""
    s = worker.settings
    deadline = time.monotonic() + max_s
    last: tuple[int, ...] | None = None
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(1.0)
        if worker.proc.poll() is not None:
            raise RuntimeError(f"worker exited; see {worker.log}")
        now = (
            committed(group, s.topic_events),
            topic_end(group, s.topic_events),
            committed(group, s.topic_subjects),
            topic_end(group, s.topic_subjects),
        )
        if now != last:
            last, since = now, time.monotonic()
            continue
        done = now[0] >= now[1] and now[2] >= now[3]
        if done and time.monotonic() - since >= 3.0:
            scraped = tp.scrape(s.web_port)
            if scraped:
                return scraped
        elif not done and time.monotonic() - since >= stall_s:
            print(
                f"  (no progress for {stall_s:.0f} s with input left: committed {now}; "
                "restarting the worker)",
                flush=True,
            )
            for line in input_partition_lines(s.web_port):
                print(f"    {line}", flush=True)
            worker.restart()
            since = time.monotonic()
    raise RuntimeError(f"the worker did not finish within {max_s} s; see {worker.log}")


def input_partition_lines(port: int) -> list[str]:
    """The worker's per-input-partition gauges (lag, alignment pause, fetching, idle):
    what a stalled worker thinks of each partition."""
    scraped = tp.scrape(port)
    return [
        f"{name} = {value:g}"
        for name, value in sorted(scraped.items())
        if name.startswith("govpipe_input_partition_")
    ] or ["(no /metrics answer)"]


def flat(values: list[float]) -> tuple[bool, float]:
    lo, hi = min(values), max(values)
    spread = (hi - lo) / lo if lo else float("inf")
    return spread <= FLAT, spread


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=28.0, help="event time the events cover")
    parser.add_argument("--every", type=int, default=100_000, help="events per checkpoint")
    parser.add_argument("--batch", type=int, default=300, help="events per input record")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument(
        "--violations",
        default="SP-01=0.01,SP-02=0.01,AZ-01=0.01,AT-01=0.005,RS-01=0.01,RS-02=0.005",
        help="injected cases per simulated task",
    )
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="govpipe-soak-"))
    broker = EmbeddedBroker().start()
    bootstrap = broker.bootstrap
    proc = None
    tail = None
    try:
        start_ms = int(time.time() * 1000) - int(args.days * DAY_MS)
        per_sim_second = args.events / (args.days * 86400)
        sim = Simulator(
            seed=args.seed,
            start_ms=start_ms,
            rate=2000,
            speed=2000 / per_sim_second,
            violations=parse_violations(args.violations),
        )
        tp.load_registry(sim.registry())
        settings = tp.settings_for(bootstrap, "soak", data, [1, 2])
        create_topics(settings)
        partitions = settings.events_partitions
        log = data / "worker.log"
        enc = AvroEncoder()
        print(
            f"soak on {bootstrap} ({os.cpu_count()} cores): {args.events:,} events over "
            f"{args.days:g} days of event time, one worker (stage 1 + 2), "
            f"{settings.subjects_partitions} stage-2 partitions; worker log {log}",
            flush=True,
        )
        worker = Worker(settings, log)
        proc = worker.proc
        warm = sim.events(1)
        produce(bootstrap, settings.topic_events, [enc.batch(warm)])
        # reads the worker group's committed offsets; never subscribes (no group join)
        group = Consumer({"bootstrap.servers": bootstrap, "group.id": settings.app_id})
        wait_handled(worker, group, max_s=300)
        changelog = next(
            t
            for t in tp.bench_consumer(bootstrap, "md").list_topics(timeout=10).topics
            if t.endswith("subject-state-changelog") and "soak" in t
        )
        tail = ChangelogTail(bootstrap, changelog)
        tail.start()
        print(
            f"{'events':>10} {'day':>5} {'entries':>9} {'rss MB':>8} {'changelog':>11} "
            f"{'live keys':>10} {'live MB':>8} {'expired':>9} {'dedup kept/back':>15} "
            f"{'alerts':>7} {'broker MB':>10} {'wall s':>7}",
            flush=True,
        )
        produced = 1
        rows: list[tuple[int, float, float, float, int, int, int, float]] = []
        t0 = time.monotonic()
        while produced < args.events:
            # The embedded broker keeps every record in memory: stop before the machine
            # runs out (the next chunk needs about what the last one took, with margin).
            if len(rows) >= 2:
                need = 1.5 * (rows[-1][7] - rows[-2][7] + rows[-1][3] - rows[-2][3]) + 1024
                if mem_available_mb() < need:
                    print(
                        f"  stopped at {produced:,} events: {mem_available_mb():,.0f} MB "
                        f"available, the next chunk needs ~{need:,.0f} MB (the embedded "
                        "broker keeps every record in memory)",
                        flush=True,
                    )
                    break
            n = min(args.every - (produced % args.every or 0), args.events - produced)
            chunk = sim.events(n)
            records = [
                enc.batch(chunk[i : i + args.batch]) for i in range(0, len(chunk), args.batch)
            ]
            # record k to partition k mod n: the sticky partitioner's runs, hours of event
            # time apart, had stage 1's watermark alignment pause the partitions ahead,
            # and with 100,000 events at once a run stalled a partition for minutes
            produce(bootstrap, settings.topic_events, records, spread=partitions)
            produced += n
            s = wait_handled(worker, group)
            proc = worker.proc
            records_on, live, live_bytes = tail.caught_up()
            entries = s.get("govpipe_state_entries", float("nan"))
            expired = s.get("govpipe_state_expired_total", 0)
            alerts = sum(v for k, v in s.items() if k.startswith("govpipe_alerts_total"))
            # per worker process: a restarted worker counts from 0
            kept = s.get('govpipe_dedup_record_total{op="kept"}', 0)
            back = s.get('govpipe_dedup_record_total{op="recalled"}', 0)
            day = (sim.clock_ms - start_ms) / DAY_MS
            rss = rss_mb(proc.pid)
            broker_mb = rss_mb(broker.pid)
            rows.append((produced, day, entries, rss, records_on, live, live_bytes, broker_mb))
            print(
                f"{produced:>10,} {day:>5.1f} {entries:>9,.0f} {rss:>8,.0f} {records_on:>11,} "
                f"{live:>10,} {live_bytes / 2**20:>8,.1f} {expired:>9,.0f} "
                f"{f'{kept:,.0f}/{back:,.0f}':>15} {alerts:>7,.0f} "
                f"{broker_mb:>10,.0f} {time.monotonic() - t0:>7,.0f}",
                flush=True,
            )
            kinds = sorted(tail.by_kind().items(), key=lambda kv: -kv[1])
            print(
                "           live MB by kind: "
                + ", ".join(f"{k} {v / 2**20:,.1f}" for k, v in kinds if v >= 2**20 // 10),
                flush=True,
            )
        after = [r for r in rows if r[1] >= WARM_UP_DAYS]
        print(
            f"\nafter the warm-up ({WARM_UP_DAYS} days of event time: finished subjects are "
            f"kept up to 7 days after they finish), {len(after)} checkpoints:"
        )
        if len(after) < 2:
            print("  too few checkpoints after the warm-up to judge (run more events or days)")
            return 1
        verdicts = []
        for name, col in (
            ("Table entries", 2),
            ("worker RSS", 3),
            ("compacted changelog keys", 5),
            ("compacted changelog bytes", 6),
        ):
            ok, spread = flat([float(r[col]) for r in after])
            verdicts.append(ok)
            print(f"  {name:<26} {'flat' if ok else 'NOT flat'} (max/min - 1 = {spread:.1%})")
        growth = [b[4] - a[4] for a, b in itertools.pairwise(after)]
        print(
            f"  changelog records appended per checkpoint: {min(growth):,}..{max(growth):,} "
            "(uncompacted: Tansu keeps every record; Apache Kafka compacts the topic to the "
            "live keys plus tombstones until delete.retention.ms)"
        )
        print(f"  => {'FLAT within 10%' if all(verdicts) else 'NOT flat within 10%'}")
        return 0 if all(verdicts) else 1
    finally:
        if tail is not None:
            tail.stopped = True
        if proc is not None:
            tp.stop_worker(proc)
        tp.clear_bench_keys()
        broker.stop()


if __name__ == "__main__":
    raise SystemExit(main())
