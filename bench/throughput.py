"""Stage-1 throughput on the embedded broker, from one run (prints figures; not a test).

  python bench/throughput.py [--events 200000] [--single 40000] [--batch 300]

For batched records and for single-event records it prints:
  raw    confluent-kafka consuming the same records (the ceiling of the transport)
  codec  decode + validate in-process, no Kafka (the ceiling of our own CPU work)
  worker `govpipe worker` sustained rate, first to last forwarded event, measured from
         the timestamps of its output records (start-up and group join excluded)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.admin import create_topics
from pipeline.codec import AvroEncoder
from pipeline.embedded import EmbeddedBroker
from pipeline.embedded.ports import free_port
from pipeline.flow.route import decode_subject_batch
from pipeline.flow.schemas import SchemaResolver
from pipeline.flow.validate import Validator
from pipeline.settings import Settings, load_settings, settings_env
from pipeline.simulate import Simulator
from tests.support.kafka import assign_all, produce


def simulated(n: int, seed: int) -> list[dict]:
    sim = Simulator(seed=seed)
    return list(sim.events(n))


def settings_for(bootstrap: str, tag: str, data: Path) -> Settings:
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
    got, start = 0, None
    while got < expect:
        msgs = consumer.consume(5000, timeout=1.0)
        if msgs and start is None:
            start = time.perf_counter()
        got += sum(1 for m in msgs if not m.error())
    elapsed = time.perf_counter() - (start or time.perf_counter())
    consumer.close()
    return elapsed


def codec_rate(records: list[bytes], events: int) -> float:
    validator = Validator(SchemaResolver(), 8 * 1024 * 1024, 100_000)
    start = time.perf_counter()
    for value in records:
        validator.validate(value)
    return events / (time.perf_counter() - start)


def worker_rate(settings: Settings, expect: int, log: Path) -> tuple[float, float]:
    """(events/s first→last output, seconds to first output)."""
    env = {**os.environ, **settings_env(settings)}
    started = time.time()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "worker"], env=env, stdout=out, stderr=out
        )
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"bench-out-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    assign_all(consumer, settings.topic_subjects)
    got, first_ts, last_ts = 0, None, None
    deadline = time.monotonic() + 600
    try:
        while got < expect and time.monotonic() < deadline:
            for m in consumer.consume(1000, timeout=1.0):
                if m.error():
                    continue
                _, items = decode_subject_batch(m.value())
                ts = m.timestamp()[1] / 1000
                if first_ts is None:
                    first_ts = ts
                # the first record's own events count from its timestamp onwards
                got += sum(1 for item in items if item[3])
                last_ts = ts if last_ts is None else max(last_ts, ts)
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited; see {log}")
    finally:
        consumer.close()
        proc.terminate()
        proc.wait(30)
    if got < expect or first_ts is None or last_ts is None:
        raise RuntimeError(f"only {got}/{expect} events came out; see {log}")
    return got / max(last_ts - first_ts, 1e-6), first_ts - started


def run_case(name: str, bootstrap: str, records: list[bytes], events: int, data: Path) -> None:
    settings = settings_for(bootstrap, f"{name}-{uuid.uuid4().hex[:6]}", data)
    create_topics(settings)
    produce(bootstrap, settings.topic_events, records)
    raw_s = raw_consume(bootstrap, settings.topic_events, len(records))
    raw_rate = events / raw_s if raw_s > 0 else float("inf")
    codec = codec_rate(records, events)
    rate, to_first = worker_rate(settings, events, data / f"{name}-worker.log")
    print(f"\n== {name}: {len(records):,} records, {events:,} events ==")
    print(
        f"raw confluent-kafka consume : {raw_rate:>12,.0f} events/s "
        f"({len(records) / raw_s if raw_s > 0 else 0:,.0f} records/s)"
    )
    print(f"codec decode + validate     : {codec:>12,.0f} events/s")
    print(
        f"worker stage 1 (sustained)  : {rate:>12,.0f} events/s "
        f"({rate * len(records) / events:,.0f} records/s; first output {to_first:.1f} s "
        "after start)"
    )
    print(f"ratios: worker/raw {rate / raw_rate:.3f}, worker/codec {rate / codec:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--single", type=int, default=40_000)
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
        events = simulated(args.events, args.seed)
        batched = [enc.batch(events[i : i + args.batch]) for i in range(0, len(events), args.batch)]
        single = [enc.event(e) for e in events[: args.single]]
        print(f"govpipe stage-1 bench on {bootstrap} ({os.cpu_count()} cores); Avro records")
        run_case("batched", bootstrap, batched, len(events), data)
        run_case("single", bootstrap, single, len(single), data)
    finally:
        if broker is not None:
            broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
