"""Stage-1 throughput on the embedded broker, from one run (prints figures; not a test).

  python bench/throughput.py [--events 200000] [--single 40000] [--batch 300]

For batched records and for single-event records it prints:
  raw    confluent-kafka consuming the same records (the ceiling of the transport)
  codec  decode + validate in-process, no Kafka (the ceiling of our own CPU work)
  worker `govpipe worker` (stage 1 alone), on a worker already joined and warm (the first
         record goes alone and its output is awaited): from the start of producing the
         rest to the timestamp of the last output record
  whole  the same for a worker running stage 1 + stage 2, until stage 2 goes quiet
  naive  bench/naive_faust.py (SP-01, RS-01, RS-02 the way faust's docs teach: one agent,
         per event a Redis read and a Table write) as its own worker on the same input,
         measured like ``worker``; its alerts are counted beside govpipe's (issue 17)
and, once, event -> alert latency (p50/p99) through a whole govpipe worker at steady
input rates (``--latency-rates``, ``--latency-seconds``).

Shorter runs: ``--events 50000 --skip-single --latency-seconds 20``; ``--no-naive`` and
``--no-latency`` leave those parts out. ``make bench`` runs everything.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

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
from pipeline.simulate import Simulator, parse_violations
from tests.support.kafka import assign_all, produce

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# Per run: concurrent benches on one Redis neither share nor delete each other's keys.
PREFIX = f"govpipe-bench-{uuid.uuid4().hex[:8]}:nhi:"


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


def bench_consumer(bootstrap: str, tag: str, extra: dict[str, Any] | None = None) -> Consumer:
    """A consumer of the bench's own, from the earliest offset, committing nothing."""
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{tag}-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **(extra or {}),
        }
    )


def read_to_end(bootstrap: str, topic: str, max_s: float) -> list[bytes]:
    """Every record value on ``topic`` up to its end offsets when called; fails
    loudly when the end is not reached within ``max_s`` (a figure from part of a
    topic would be wrong, not approximate)."""
    consumer = bench_consumer(bootstrap, "read")
    assign_all(consumer, topic)
    ends = {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions
    }
    read = {p: 0 for p in ends}
    out: list[bytes] = []
    deadline = time.monotonic() + max_s
    while any(read[p] < ends[p] for p in ends) and time.monotonic() < deadline:
        for m in consumer.consume(1000, timeout=1.0):
            if m.error() or m.offset() >= ends[m.partition()]:
                continue
            read[m.partition()] = m.offset() + 1
            out.append(m.value())
    consumer.close()
    if any(read[p] < ends[p] for p in ends):
        raise RuntimeError(f"could not read {topic} to its end: {read} of {ends}")
    return out


def raw_consume(bootstrap: str, topic: str, expect: int) -> float:
    consumer = bench_consumer(bootstrap, "raw")
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


def stop_worker(*procs: subprocess.Popen[bytes]) -> None:
    """SIGTERM every worker, then wait; one that has not exited within 30 s is killed
    (a bench must not crash on ``TimeoutExpired`` after its figure is taken)."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def worker_rate(
    settings: Settings, bootstrap: str, records: list[bytes], counts: list[int], log: Path
) -> tuple[float, float]:
    """(events/s, seconds to a warm worker): stage 1 alone, on a worker already
    joined and warm, from the start of producing the input to its last output.

    The first record goes alone and its output is awaited before the clock starts,
    so group join and start-up stay out of the figure, and so does nothing else:
    timing from the first output instead would leave out the first batch's work.
    """
    consumer = bench_consumer(settings.kafka_bootstrap_servers, "out")
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
        stop_worker(proc)
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
    return sum(len(decode_subject_batch(v)[1]) for v in read_to_end(bootstrap, topic, 300))


def cpu_busy() -> tuple[float, float]:
    """(busy, total) CPU jiffies of the whole machine so far (/proc/stat)."""
    fields = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def stage2_items(sample: dict[str, float]) -> float:
    return sample.get('govpipe_events_in_total{stage="2"}', 0)


def pipeline_rate(
    settings: Settings,
    bootstrap: str,
    records: list[bytes],
    counts: list[int],
    log: Path,
    workers: int = 1,
) -> tuple[float, int, int, float]:
    """Whole worker (stage 1 + stage 2) on warm workers, as ``worker_rate``: from
    the start of producing the input until stage 2 has handled every item on the
    internal topic.

    The end is not "stage 2's counter stopped moving": a worker busy with one large
    unit cannot answer the scrape, and a stalled counter then looks like the end.
    The run goes on until the workers are quiet (stage 1 has read every event and two
    scrapes 5 s apart agree), then the internal topic is counted to its end, and the
    clock stops at the first scrape at which stage 2 had handled that many items. If
    stage 2 never handled them all, the bench fails instead of printing a figure.

    ``workers`` processes run in one group (scale-out), each with its own web port
    and data directory; warm means every one has forwarded a record and handled an
    internal item, so the group is settled before the clock starts (a warm-up record
    goes to every input partition until then).

    Returns (events/s, stage-2 items processed, alerts, machine CPU busy fraction
    while measured)."""
    group = [settings] + [
        settings.model_copy(
            update={"web_port": free_port(), "data_dir": Path(f"{settings.data_dir}-{i}")}
        )
        for i in range(1, workers)
    ]
    procs = [
        start_worker(s, log if i == 0 else log.with_suffix(f".{i}.log"))
        for i, s in enumerate(group)
    ]
    partitions = settings.events_partitions
    clock: float | None = None
    cpu_at_clock = (0.0, 0.0)
    used = 0  # warm-up records
    deadline = time.monotonic() + 900
    samples: list[dict[str, float]] = [{} for _ in group]
    history: list[tuple[float, float, tuple[float, float]]] = []  # (time, items, cpu)
    try:
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"a worker exited; see {log}")
            fresh = [scrape(s.web_port) for s in group]
            if not all(fresh):
                time.sleep(0.2)
                continue  # an event loop is busy: no sample, not a stall
            samples = fresh
            now = time.monotonic()
            items = sum(stage2_items(x) for x in samples)
            if clock is None:
                warm = all(
                    x.get('govpipe_events_out_total{stage="1"}', 0) > 0 and stage2_items(x) > 0
                    for x in samples
                )
                if warm:
                    clock, cpu_at_clock = now, cpu_busy()
                    produce(bootstrap, settings.topic_events, records[used:])
                    continue
                for p in range(partitions):
                    produce(bootstrap, settings.topic_events, records[used : used + 1], p)
                    used += 1
                time.sleep(2.0)
                continue
            time.sleep(0.2)
            in1 = sum(x.get('govpipe_events_in_total{stage="1"}', 0) for x in samples)
            history.append((now, items, cpu_busy()))
            quiet = [v for t, v, _ in history if t >= now - 5.0]
            if in1 >= sum(counts) and history[0][0] <= now - 5.0 and min(quiet) == max(quiet):
                break
        else:
            raise RuntimeError(f"the workers did not go quiet within 900 s; see {log}")
    finally:
        stop_worker(*procs)
    if clock is None:
        raise RuntimeError(f"no progress; see {log}")
    total = count_internal_items(bootstrap, settings.topic_subjects)
    handled = history[-1][1]
    if handled < total:
        raise RuntimeError(f"stage 2 handled {handled:,.0f} of {total:,} internal items; see {log}")
    end, _, cpu_at_end = next(h for h in history if h[1] >= total)
    busy = (cpu_at_end[0] - cpu_at_clock[0]) / max(cpu_at_end[1] - cpu_at_clock[1], 1e-6)
    alerts = int(
        sum(v for x in samples for k, v in x.items() if k.startswith("govpipe_alerts_total"))
    )
    return sum(counts[used:]) / max(end - clock, 1e-6), int(handled), alerts, busy


NAIVE = Path(__file__).resolve().parent / "naive_faust.py"
NAIVE_RULES = ("SP-01", "RS-01", "RS-02")


def read_topic(bootstrap: str, topic: str) -> list[Any]:
    """Every record's value on ``topic`` (JSON), read to its end."""
    return [orjson.loads(v) for v in read_to_end(bootstrap, topic, 120)]


def alerts_by_rule(alerts: list[Any]) -> collections.Counter[str]:
    """Alerts per detector, new alerts only (govpipe's Update records are not new)."""
    return collections.Counter(
        a["detector"] for a in alerts if a.get("activity_id", 1) == 1 and "detector" in a
    )


def naive_rate(
    bootstrap: str, records: list[bytes], counts: list[int], data: Path, tag: str
) -> tuple[float, collections.Counter[str]]:
    """(events/s, alerts per rule) of bench/naive_faust.py, measured as ``worker_rate``:
    warm worker (first record handled), from producing the rest to its last event."""
    name = f"bench-naive-{tag}-{uuid.uuid4().hex[:6]}"
    topic_in, topic_alerts = f"{name}.events", f"{name}.alerts"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(t, 6, 1) for t in (topic_in, topic_alerts)]).values():
        f.result(30)
    progress = data / f"{name}.progress"
    log = data / f"{name}.log"
    events = sum(counts)
    env = {
        **os.environ,
        "PYTHONPATH": str(NAIVE.parent.parent),
        "NAIVE_BOOTSTRAP": bootstrap,
        "NAIVE_APP_ID": name,
        "NAIVE_INPUT": topic_in,
        "NAIVE_ALERTS": topic_alerts,
        "NAIVE_DATADIR": str(data / name),
        "NAIVE_WEB_PORT": str(free_port()),
        "NAIVE_REDIS_URL": REDIS_URL,
        "NAIVE_PREFIX": PREFIX,
        "NAIVE_PROGRESS": str(progress),
        "NAIVE_EXPECT": str(events),
    }

    def handled() -> tuple[int, float]:
        try:
            n, _, t = progress.read_text().split()
        except (OSError, ValueError):
            return 0, 0.0
        return int(n), float(t)

    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(NAIVE), "worker", "-l", "warn"],
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        produce(bootstrap, topic_in, records[:1])
        deadline = time.monotonic() + 900
        clock = None
        moved, last_n = time.monotonic(), -1
        while time.monotonic() < deadline:
            time.sleep(0.1)
            if proc.poll() is not None:
                raise RuntimeError(f"naive worker exited; see {log}")
            n = handled()[0]
            if n != last_n:
                moved, last_n = time.monotonic(), n
            elif time.monotonic() - moved > 60:  # a crashed agent leaves the worker up
                raise RuntimeError(f"naive worker stalled at {n}/{events} events; see {log}")
            if clock is None and n >= counts[0]:
                clock = time.time()
                produce(bootstrap, topic_in, records[1:])
            elif clock is not None and n >= events:
                break
        else:
            raise RuntimeError(f"naive worker handled {handled()[0]}/{events}; see {log}")
        end = handled()[1]
        time.sleep(1.0)  # let the last alerts' sends complete
    finally:
        stop_worker(proc)
    assert clock is not None
    return (events - counts[0]) / max(end - clock, 1e-6), alerts_by_rule(
        read_topic(bootstrap, topic_alerts)
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


#: One alert's latency by hop, seconds: produce -> stage 1's internal record, -> the
#: alert produced by stage 2, -> the bench's consumer (the records' CreateTimes).
Hops = tuple[float, float, float]


def latency(
    bootstrap: str, data: Path, rate: int, seconds: float, seed: int, violation: float
) -> tuple[list[float], int, float, int | None, list[Hops]]:
    """Event -> alert latencies (s) of single-event findings through a whole govpipe
    worker fed single-event Avro records at a steady ``rate``.

    Produce time is the wall clock the bench records when it hands each event to the
    producer; arrival is when the bench's consumer of the alerts topic receives the
    alert; an alert's latency is from the produce of the latest of its evidence events.
    SP-01 and AZ-01 cases are injected (``violation`` per simulated task each) among
    clean traffic; every single-event alert (no window) is counted. Returns
    (latencies in order of arrival, events produced, achieved input rate, events stage 1
    had not yet read when producing ended: > 0 means the worker did not keep up, and
    the latency then measures its backlog, and each latency's ``Hops`` where the
    internal record of its event was seen)."""
    settings = settings_for(bootstrap, f"lat{rate}-{uuid.uuid4().hex[:6]}", data, [1, 2])
    create_topics(settings)
    log = data / f"latency-{rate}.log"
    enc = AvroEncoder()
    sim = Simulator(seed=seed, rate=rate, violations={"SP-01": violation, "AZ-01": violation})
    load_registry(sim.registry())
    sent: dict[str, float] = {}
    arrivals: list[tuple[float, list[str], Any, float]] = []
    #: event id -> when stage 1 produced its first internal record (its CreateTime)
    routed: dict[str, float] = {}
    stop = threading.Event()
    consumer = bench_consumer(bootstrap, "lat", {"fetch.wait.max.ms": 10})
    assign_all(consumer, settings.topic_alerts)
    internal = bench_consumer(bootstrap, "lat-internal", {"fetch.wait.max.ms": 10})
    assign_all(internal, settings.topic_subjects)

    def follow() -> None:
        while not stop.is_set():
            for m in consumer.consume(100, timeout=0.05):
                if m.error():
                    continue
                now = time.time()
                body = orjson.loads(m.value())
                ids = list(body.get("evidence", {}).get("event_ids") or [])
                # CreateTime: when stage 2 handed the alert to its producer
                arrivals.append((now, ids, body.get("window_start"), m.timestamp()[1] / 1000))

    def follow_internal() -> None:
        while not stop.is_set():
            for m in internal.consume(500, timeout=0.05):
                if m.error() or m.value() is None:
                    continue
                at = m.timestamp()[1] / 1000
                for copy in copies(decode_subject_batch(m.value())[1]):
                    routed.setdefault(copy.event["event_id"], at)

    proc = start_worker(settings, log)
    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    internal_reader = threading.Thread(target=follow_internal, daemon=True)
    internal_reader.start()
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 1, "queue.buffering.max.messages": 1_000_000}
    )
    produced = 0
    try:
        # Warm: the first events go alone; wait for stage 1 to have handled them.
        warm = sim.events(50)
        produce(bootstrap, settings.topic_events, [enc.event(e) for e in warm])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited; see {log}")
            sample = scrape(settings.web_port)
            out1 = sample.get('govpipe_events_out_total{stage="1"}', 0)
            if out1 >= len(warm) and sample.get('govpipe_events_in_total{stage="2"}', 0) > 0:
                break
        else:
            raise RuntimeError(f"latency worker did not warm up; see {log}")
        start = time.time()
        total = int(rate * seconds)
        for event in sim:
            due = start + produced / rate
            pause = due - time.time()
            if pause > 0:
                time.sleep(pause)
            value = enc.event(event)
            sent[event["event_id"]] = time.time()
            producer.produce(settings.topic_events, value=value)
            producer.poll(0)
            produced += 1
            if produced >= total:
                break
        achieved = produced / (time.time() - start)
        producer.flush(30)
        in1 = scrape(settings.web_port).get('govpipe_events_in_total{stage="1"}')
        behind = None if in1 is None else len(warm) + produced - int(in1)
        # Drain: every event read by stage 1 and stage 2 quiet for 3 s, so the alerts of
        # a backlog are counted too (stopping early would drop the slowest ones).
        history: list[tuple[float, float]] = []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            time.sleep(0.5)
            sample = scrape(settings.web_port)
            if not sample:
                continue
            now = time.monotonic()
            history.append((now, sample.get('govpipe_events_in_total{stage="2"}', 0)))
            quiet = [v for t, v in history if t >= now - 3.0]
            done = sample.get('govpipe_events_in_total{stage="1"}', 0) >= len(warm) + produced
            if done and history[0][0] <= now - 3.0 and min(quiet) == max(quiet):
                break
        time.sleep(1.0)  # the last alerts' fetch
    finally:
        stop.set()
        reader.join(5)
        internal_reader.join(5)
        consumer.close()
        internal.close()
        stop_worker(proc)
    values: list[float] = []
    hops: list[Hops] = []
    for arrived, ids, window_start, created in sorted(arrivals, key=lambda a: a[0]):
        times = [(sent[i], i) for i in ids if i in sent]
        if window_start is None and times:
            t, last = max(times)
            values.append(arrived - t)
            if last in routed:
                hops.append((routed[last] - t, created - routed[last], arrived - created))
    return values, produced, achieved, behind, hops


def run_case(
    name: str,
    bootstrap: str,
    records: list[bytes],
    counts: list[int],
    data: Path,
    naive: bool = True,
    scale_out: bool = False,
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
    whole, items, alerts, busy = pipeline_rate(
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
        f"({items:,} internal items handled, {alerts:,} alerts; one process, all detectors; "
        f"machine CPU {busy:.0%} busy)"
    )
    print(f"ratio whole/stage 1 alone   : {whole / rate:.3f} (target >= 0.5)")
    if scale_out:
        two = settings_for(bootstrap, f"{name}-two-{uuid.uuid4().hex[:6]}", data, [1, 2])
        create_topics(two)
        both, _, _, busy2 = pipeline_rate(
            two, bootstrap, records, counts, data / f"{name}-two-workers.log", workers=2
        )
        print(
            f"two whole workers, one group: {both:>11,.0f} events/s "
            f"(machine CPU {busy2:.0%} busy; ratio to one {both / whole:.2f}, target >= 1.5)"
        )
    if not naive:
        return
    ours = alerts_by_rule(read_topic(bootstrap, full.topic_alerts))
    naive_ev, theirs = naive_rate(bootstrap, records, counts, data, name)
    print(
        f"naive faust (SP-01,RS-01,RS-02): {naive_ev:>9,.0f} events/s "
        "(bench/naive_faust.py: one agent, per event a Redis read + a Table write)"
    )
    print(f"ratio govpipe whole/naive   : {whole / naive_ev:.2f}x (target >= 3x)")
    print("new alerts on this input      govpipe   naive")
    for rule in NAIVE_RULES:
        print(f"  {rule:<27} {ours.get(rule, 0):>8,} {theirs.get(rule, 0):>7,}")
    print(
        "  (they differ where the rules do: naive judges each event on arrival, in arrival "
        "order across the 6 unkeyed partitions, so an action read before its credential's "
        "issuance is not judged (SP-01 lower) and RS-01 fires on decisions whose watermark "
        "govpipe has not yet passed when the input ends (govpipe waits for it); SP-01 dedup "
        "is per credential since the last alert, govpipe's per fixed day; no policy; see "
        "bench/naive_faust.py)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--single", type=int, default=40_000)
    parser.add_argument("--skip-single", action="store_true", help="batched records only")
    parser.add_argument("--batch", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bootstrap", default=None, help="default: start an embedded Tansu")
    parser.add_argument(
        "--no-naive", dest="naive", action="store_false", help="skip bench/naive_faust.py"
    )
    parser.add_argument(
        "--violations",
        default="SP-01=0.01,RS-01=0.01,RS-02=0.005",
        help="injected cases per simulated task in the input (so both sides detect something);"
        " '' for clean traffic only",
    )
    parser.add_argument("--no-latency", dest="latency", action="store_false")
    parser.add_argument(
        "--scale-out",
        action="store_true",
        help="also two whole workers in one group on the batched input (and the CPU use)",
    )
    parser.add_argument(
        "--latency-rates", default="1000,2000", help="steady input rates (ev/s), comma-separated"
    )
    parser.add_argument("--latency-seconds", type=float, default=60.0, help="per rate")
    parser.add_argument(
        "--latency-violation", type=float, default=0.01, help="SP-01 and AZ-01 cases per task"
    )
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="govpipe-bench-"))
    broker = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        broker = EmbeddedBroker().start()
        bootstrap = broker.bootstrap
    try:
        enc = AvroEncoder()
        sim = Simulator(seed=args.seed, rate=2000, violations=parse_violations(args.violations))
        events = sim.events(args.events)
        load_registry(sim.registry())
        starts = range(0, len(events), args.batch)
        batched = [enc.batch(events[i : i + args.batch]) for i in starts]
        batched_counts = [len(events[i : i + args.batch]) for i in starts]
        single = [enc.event(e) for e in events[: args.single]]
        print(f"govpipe stage-1 bench on {bootstrap} ({os.cpu_count()} cores); Avro records")
        run_case("batched", bootstrap, batched, batched_counts, data, args.naive, args.scale_out)
        if not args.skip_single:
            run_case("single", bootstrap, single, [1] * len(single), data, args.naive)
        if args.latency:
            print(
                "\n== event -> alert latency, whole worker (stage 1 + 2), single-event records, "
                "single-event findings =="
            )
            print(
                "bounded by: the bench producer's linger (1 ms) + aiokafka's fetch wait (up to "
                "fetch_max_wait_ms, 500 ms by default, when a partition is idle) + stage 1's "
                f"batch wait (GOVPIPE_BATCH_MAX_WAIT_S={Settings().batch_max_wait_s}) + the "
                "internal topic round trip + stage 2's unit wait, the changelog write awaited "
                "before alerts are sent, and the alert consumer's fetch (10 ms)"
            )
            for rate in [int(r) for r in args.latency_rates.split(",") if r]:
                values, produced, achieved, behind, hops = latency(
                    bootstrap, data, rate, args.latency_seconds, args.seed, args.latency_violation
                )
                if not values:
                    print(f"{rate:>6,} ev/s: no single-event alert arrived ({produced:,} events)")
                    continue
                print(
                    f"{rate:>6,} ev/s (achieved {achieved:,.0f}, {produced:,} events, "
                    f"{len(values):,} alerts): p50 {percentile(values, 0.5) * 1000:,.0f} ms, "
                    f"p99 {percentile(values, 0.99) * 1000:,.0f} ms, "
                    f"max {max(values) * 1000:,.0f} ms (target p99 < 1 s at 2,000)"
                )
                if hops:
                    print(
                        "        where it goes (p50 / p99, ms; record CreateTimes, one clock): "
                        + ", ".join(
                            f"{name} {percentile([h[i] for h in hops], 0.5) * 1000:,.0f}"
                            f" / {percentile([h[i] for h in hops], 0.99) * 1000:,.0f}"
                            for i, name in enumerate(
                                (
                                    "produce -> stage 1 routed it",
                                    "-> stage 2 sent the alert",
                                    "-> alert read",
                                )
                            )
                        )
                    )
                half = len(values) // 2
                if half:
                    print(
                        f"        p50 of the first half of the alerts "
                        f"{percentile(values[:half], 0.5) * 1000:,.0f} ms, of the second half "
                        f"{percentile(values[half:], 0.5) * 1000:,.0f} ms; stage 1 behind by "
                        f"{'?' if behind is None else f'{behind:,}'} events when producing "
                        "ended"
                        + (
                            " (more than 1 s of input: the worker did not keep up, the "
                            "latency measures its backlog)"
                            if behind is not None and behind > rate
                            else ""
                        )
                    )
    finally:
        clear_bench_keys()
        if broker is not None:
            broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
