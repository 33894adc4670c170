"""What one `govpipe trace task ID` lookup costs: the worker's interactive query against
a read of the compacted evidence topic, as the topic grows.

A real broker (embedded Tansu unless --bootstrap), Redis (REDIS_URL, default database 7)
and one `govpipe worker`. The must-show task of the tests goes through the worker (it
holds the task's dossier state); then the evidence topic is filled with other tasks'
dossiers (the must-show dossier under other task ids, as Avro) in steps, and at each
size the same task is looked up both ways, in this process:

* worker: ``ask_worker`` (one HTTP request; the median of --asks);
* topic: ``TopicScan`` over ``TopicReader`` (every record from the beginning until the
  topic has been quiet for --idle seconds, as `trace` reads it), once.

    python -m bench.trace_lookup [--sizes 1000,10000,40000] [--idle 0.5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from pipeline.admin import create_topics
from pipeline.codec import AvroEncoder
from pipeline.embedded import EmbeddedBroker, LocalRedis
from pipeline.embedded.ports import free_port
from pipeline.evidence.codec import EvidenceCodec
from pipeline.evidence.remote import ask_worker
from pipeline.evidence.source import TopicScan
from pipeline.report.collect import TopicReader
from pipeline.settings import load_settings
from tests.integration.test_evidence_e2e import REGISTRY, raw
from tests.support.kafka import produce
from tests.support.scenario import clear_registry, load_registry
from tests.support.worker import WorkerProcess
from tests.unit.evidence import _scenario as sc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,40000", help="dossiers on the topic")
    parser.add_argument("--asks", type=int, default=50, help="worker lookups per size")
    parser.add_argument("--idle", type=float, default=0.5, help="the topic read's quiet time")
    parser.add_argument("--bootstrap", default=None, help="default: start an embedded Tansu")
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/7"))
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    data = Path(tempfile.mkdtemp(prefix="govpipe-trace-bench-"))
    broker = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        broker = EmbeddedBroker().start()
        bootstrap = broker.bootstrap
    local = LocalRedis(args.redis).start()
    tag = uuid.uuid4().hex[:8]
    prefix = f"t{tag}:nhi:"
    settings = load_settings(
        kafka_bootstrap_servers=bootstrap,
        redis_url=local.url,
        redis_key_prefix=prefix,
        app_id=f"gp-trace-bench-{tag}",
        **{
            f"topic_{name}": f"t{tag}.{name}"
            for name in ("events", "dlq", "alerts", "metrics", "evidence", "subjects")
        },
        data_dir=data / "worker",
        web_port=free_port(),
        events_partitions=1,
        subjects_partitions=3,
        output_partitions=1,
        idle_partition_s=2.0,
    )
    worker = None
    try:
        create_topics(settings)
        load_registry(local.url, prefix, REGISTRY)
        events = [raw(e) for e in [*sc.events(), sc.late_revocation()]]
        produce(bootstrap, settings.topic_events, [AvroEncoder().batch(events)], 0)
        worker = WorkerProcess(settings, data / "worker.log").start(timeout=120)
        url = settings.web_advertised_url
        deadline = time.monotonic() + 120
        while not (reply := ask_worker(url, sc.TASK)).held:
            if time.monotonic() > deadline:
                raise SystemExit(f"the worker never held {sc.TASK}: {reply}")
            time.sleep(0.5)
        assert reply.dossier is not None
        codec = EvidenceCodec(topic=settings.topic_evidence)
        filler = codec.encode(reply.dossier)
        print(
            f"trace task lookup, {os.cpu_count()} cores, broker {bootstrap}; "
            f"one dossier = {len(filler):,} bytes of Avro"
        )
        print(f"{'dossiers on topic':>18} {'worker (median ms)':>19} {'topic read (s)':>15}")
        on_topic = 1
        for size in sizes:
            values = []
            for i in range(on_topic, size):
                record = {**reply.dossier, "task_id": f"task-fill-{i:07d}"}
                values.append((record["task_id"].encode(), codec.encode(record)))
            produce(bootstrap, settings.topic_evidence, values)
            on_topic = max(on_topic, size)
            asks = []
            for _ in range(args.asks):
                started = time.perf_counter()
                assert ask_worker(url, sc.TASK).held
                asks.append(time.perf_counter() - started)
            started = time.perf_counter()
            reader = TopicReader(settings, settings.topic_evidence, idle_s=args.idle)
            scan = TopicScan(reader, codec)
            assert scan.get(sc.TASK) is not None
            took = time.perf_counter() - started
            print(
                f"{scan.records:>18,} {statistics.median(asks) * 1000:>19.1f} {took:>15.2f}"
                f"  (of which {args.idle:.1f} s is the quiet wait)"
            )
    finally:
        if worker is not None:
            worker.stop()
        clear_registry(local.url, prefix)
        local.stop()
        if broker is not None:
            broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
