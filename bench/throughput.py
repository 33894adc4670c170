"""Stage-1 throughput on the embedded broker, from one run (prints figures; not a test).

  python bench/throughput.py [--events 200000] [--single 40000] [--batch 300]

For batched records and for single-event records it prints:
  raw    confluent-kafka consuming the same records (the ceiling of the transport)
  codec  decode + validate in-process, no Kafka (the ceiling of our own CPU work)
  worker `govpipe worker` (stage 1 alone), on a worker already joined and warm (the first
         record goes alone and its output is awaited): from the start of producing the
         rest to the timestamp of the last output record
  whole  the same for a worker running stage 1 + stage 2, until stage 2 goes quiet
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from pipeline.admin import create_topics
from pipeline.codec import AvroEncoder
from pipeline.embedded import EmbeddedBroker
from pipeline.embedded.ports import free_port
from pipeline.enrichment.keys import KeySpace
from pipeline.enrichment.registry import parse_registry, write_identities
from pipeline.flow.route import copies, decode_subject_batch
from pipeline.flow.schemas import SchemaResolver
from pipeline.flow.validate import Validator
from pipeline.settings import Settings, load_settings, settings_env
from pipeline.simulate import Simulator
from tests.support.kafka import assign_all, produce

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = "govpipe-bench:nhi:"


def load_registry(registry: list[dict]) -> None:
    """The simulator's identities under every bench key prefix used in this run."""
    entries, problems = parse_registry({"identities": registry})
    assert not problems, problems
    client = redis.Redis.from_url(REDIS_URL)
    write_identities(client, KeySpace(PREFIX), entries)
    client.close()


def clear_bench_keys() -> None:
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=PREFIX + "*", count=1000):
        client.delete(key)
    client.close()


def settings_for(bootstrap: str, tag: str, data: Path, stages: list[int]) -> Settings:
    return load_settings(
        kafka_bootstrap_servers=bootstrap,
        app_id=f"bench-{tag}",
        topic_events=f"bench-{tag}.events",
        topic_dlq=f"bench-{tag}.dlq",
        topic_alerts=f"bench-{tag}.alerts",
        topic_metrics=f"bench-{tag}.metrics",
        topic_subjects=f"bench-{tag}.subjects",
        data_dir=data / tag,
        web_port=free_port(),
        events_partitions=6,
        subjects_partitions=6,
        redis_url=REDIS_URL,
        redis_key_prefix=PREFIX,
        worker_stages=stages,
    )


def raw_consume(bootstrap: str, topic: str, expect: int) -> float:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-raw-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    assign_all(consumer, topic)
    got, start = 0, time.perf_counter()
    while got < expect:
        msgs = consumer.consume(5000, timeout=1.0)
        got += sum(1 for m in msgs if not m.error())
    elapsed = time.perf_counter() - start
    consumer.close()
    return elapsed


def codec_rate(records: list[bytes], events: int) -> float:
    validator = Validator(SchemaResolver(), 8 * 1024 * 1024, 100_000)
    start = time.perf_counter()
    for value in records:
        validator.validate(value)
    return events / (time.perf_counter() - start)


def start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **settings_env(settings)}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline", "worker"], env=env, stdout=out, stderr=out
        )


def worker_rate(
    settings: Settings, bootstrap: str, records: list[bytes], counts: list[int], log: Path
) -> tuple[float, float]:
    """(events/s, seconds to a warm worker): stage 1 alone, on a worker already
    joined and warm, from the start of producing the input to its last output.

    The first record goes alone and its output is awaited before the clock starts,
    so group join and start-up stay out of the figure, and so does nothing else:
    timing from the first output instead would leave out the first batch's work.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"bench-out-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    assign_all(consumer, settings.topic_subjects)
    started = time.monotonic()
    proc = start_worker(settings, log)
    got, last_ts, clock = 0, 0.0, 0.0
    expect, stage = counts[0], "warm-up"
    deadline = time.monotonic() + 600
    produce(bootstrap, settings.topic_events, records[:1])
    try:
        while time.monotonic() < deadline:
            for m in consumer.consume(1000, timeout=0.5):
                if m.error():
                    continue
                _, items = decode_subject_batch(m.value())
                got += sum(1 for c in copies(items) if c.primary)
                last_ts = max(last_ts, m.timestamp()[1] / 1000)
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited; see {log}")
            if got < expect:
                continue
            if stage == "measured":
                break
            warm = time.monotonic() - started
            stage, got, expect, clock = "measured", 0, sum(counts[1:]), time.time()
            produce(bootstrap, settings.topic_events, records[1:])
    finally:
        consumer.close()
        proc.terminate()
        proc.wait(30)
    if stage != "measured" or got < expect:
        raise RuntimeError(f"only {got}/{expect} events came out ({stage}); see {log}")
    return got / max(last_ts - clock, 1e-6), warm


def scrape(port: int) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def count_internal_items(bootstrap: str, topic: str) -> int:
    """Every item on the internal topic (stage 1's subject copies and watermark
    reports, stage 2's own deltas, progress and notices), read to its end."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-count-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    assign_all(consumer, topic)
    ends = {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions
    }
    read = {p: 0 for p in ends}
    total = 0
    deadline = time.monotonic() + 300
    while any(read[p] < ends[p] for p in ends) and time.monotonic() < deadline:
        for m in consumer.consume(1000, timeout=1.0):
            if m.error():
                continue
            read[m.partition()] = m.offset() + 1
            total += len(decode_subject_batch(m.value())[1])
    consumer.close()
    if any(read[p] < ends[p] for p in ends):
        raise RuntimeError(f"could not read the internal topic to its end: {read} of {ends}")
    return total


def pipeline_rate(
    settings: Settings, bootstrap: str, records: list[bytes], counts: list[int], log: Path
) -> tuple[float, int, int]:
    """Whole worker (stage 1 + stage 2) on a warm worker, as ``worker_rate``: from
    the start of producing the input until stage 2 has handled every item on the
    internal topic.

    The end is not "stage 2's counter stopped moving": a worker busy with one large
    unit cannot answer the scrape, and a stalled counter then looks like the end.
    The run goes on until the worker is quiet (stage 1 has read every event and two
    scrapes 5 s apart agree), then the internal topic is counted to its end, and the
    clock stops at the first scrape at which stage 2 had handled that many items. If
    stage 2 never handled them all, the bench fails instead of printing a figure.

    Returns (events/s, stage-2 items processed, alerts)."""
    proc = start_worker(settings, log)
    produce(bootstrap, settings.topic_events, records[:1])
    clock: float | None = None
    deadline = time.monotonic() + 900
    samples: dict[str, float] = {}
    history: list[tuple[float, float]] = []  # (time of an answered scrape, stage-2 items)
    events = sum(counts)
    try:
        while time.monotonic() < deadline:
            time.sleep(0.2)
            fresh = scrape(settings.web_port)
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited; see {log}")
            if not fresh:
                continue  # the event loop is busy: no sample, not a stall
            samples = fresh
            out1 = samples.get('govpipe_events_out_total{stage="1"}', 0)
            in1 = samples.get('govpipe_events_in_total{stage="1"}', 0)
            items = samples.get('govpipe_events_in_total{stage="2"}', 0)
            now = time.monotonic()
            if clock is None:
                if out1 >= counts[0] and items > 0:
                    clock = now
                    produce(bootstrap, settings.topic_events, records[1:])
                continue
            history.append((now, items))
            quiet = [v for t, v in history if t >= now - 5.0]
            if in1 >= events and history[0][0] <= now - 5.0 and min(quiet) == max(quiet):
                break
        else:
            raise RuntimeError(f"the worker did not go quiet within 900 s; see {log}")
    finally:
        proc.terminate()
        proc.wait(30)
    if clock is None:
        raise RuntimeError(f"no progress; see {log}")
    total = count_internal_items(bootstrap, settings.topic_subjects)
    handled = history[-1][1]
    if handled < total:
        raise RuntimeError(f"stage 2 handled {handled:,.0f} of {total:,} internal items; see {log}")
    end = next(t for t, v in history if v >= total)
    alerts = int(sum(v for k, v in samples.items() if k.startswith("govpipe_alerts_total")))
    return (events - counts[0]) / max(end - clock, 1e-6), int(handled), alerts


def run_case(
    name: str, bootstrap: str, records: list[bytes], counts: list[int], data: Path
) -> None:
    events = sum(counts)
    settings = settings_for(bootstrap, f"{name}-{uuid.uuid4().hex[:6]}", data, [1])
    create_topics(settings)
    produce(bootstrap, settings.topic_events, records)
    raw_s = raw_consume(bootstrap, settings.topic_events, len(records))
    raw_rate = events / raw_s if raw_s > 0 else float("inf")
    codec = codec_rate(records, events)
    s1 = settings_for(bootstrap, f"{name}-s1-{uuid.uuid4().hex[:6]}", data, [1])
    create_topics(s1)
    rate, warm = worker_rate(s1, bootstrap, records, counts, data / f"{name}-worker.log")
    full = settings_for(bootstrap, f"{name}-full-{uuid.uuid4().hex[:6]}", data, [1, 2])
    create_topics(full)
    whole, items, alerts = pipeline_rate(
        full, bootstrap, records, counts, data / f"{name}-full-worker.log"
    )
    print(f"\n== {name}: {len(records):,} records, {events:,} events ==")
    print(
        f"raw confluent-kafka consume : {raw_rate:>12,.0f} events/s "
        f"({len(records) / raw_s if raw_s > 0 else 0:,.0f} records/s)"
    )
    print(f"codec decode + validate     : {codec:>12,.0f} events/s")
    print(
        f"worker stage 1 (sustained)  : {rate:>12,.0f} events/s "
        f"({rate * len(records) / events:,.0f} records/s; warm worker {warm:.1f} s after start)"
    )
    print(f"ratios: worker/raw {rate / raw_rate:.3f}, worker/codec {rate / codec:.3f}")
    print(
        f"whole worker, stage 1 + 2  : {whole:>12,.0f} events/s "
        f"({items:,} internal items handled, {alerts:,} alerts; one process, all detectors)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--single", type=int, default=40_000)
    parser.add_argument("--skip-single", action="store_true", help="batched records only")
    parser.add_argument("--batch", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bootstrap", default=None, help="default: start an embedded Tansu")
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="govpipe-bench-"))
    broker = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        broker = EmbeddedBroker().start()
        bootstrap = broker.bootstrap
    try:
        enc = AvroEncoder()
        sim = Simulator(seed=args.seed, rate=2000)
        events = sim.events(args.events)
        load_registry(sim.registry())
        starts = range(0, len(events), args.batch)
        batched = [enc.batch(events[i : i + args.batch]) for i in starts]
        batched_counts = [len(events[i : i + args.batch]) for i in starts]
        single = [enc.event(e) for e in events[: args.single]]
        print(f"govpipe stage-1 bench on {bootstrap} ({os.cpu_count()} cores); Avro records")
        run_case("batched", bootstrap, batched, batched_counts, data)
        if not args.skip_single:
            run_case("single", bootstrap, single, [1] * len(single), data)
    finally:
        clear_bench_keys()
        if broker is not None:
            broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
