"""Running a simulated scenario through a real worker, broker and Redis (integration tests)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from pipeline.codec import AvroEncoder
from pipeline.enrichment.keys import KeySpace
from pipeline.enrichment.registry import parse_registry, write_identities
from pipeline.flow.route import copies, decode_subject_batch
from pipeline.metrics import MetricCodec
from pipeline.settings import Settings
from tests.support.kafka import consume_until_quiet, produce
from tests.support.worker import WorkerProcess

MINUTE = 60_000
#: Event-time steps after the last event, published a few seconds apart as live
#: traffic would be: absence checks fire and late corrections still land in windows.
HEARTBEAT_MINUTES = (6, 12, 20, 40)


@dataclass
class Outcome:
    seen: list[dict[str, Any]] = field(default_factory=list)  # primary copies, stage 2 input
    alerts: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)

    @property
    def creates(self) -> list[dict[str, Any]]:
        return [a for a in self.alerts if a["activity_id"] == 1]


def load_registry(redis_url: str, prefix: str, registry: list[dict[str, Any]]) -> None:
    entries, problems = parse_registry({"identities": registry})
    assert not problems, problems
    client = redis.Redis.from_url(redis_url)
    try:
        write_identities(client, KeySpace(prefix), entries)
    finally:
        client.close()


def clear_registry(redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)
    finally:
        client.close()


def run_scenario(
    settings: Settings,
    start_worker: Callable[[str], WorkerProcess],
    registry: list[dict[str, Any]],
    events: list[dict[str, Any]],
    *,
    kill_after_s: float | None = None,
    during: Callable[[WorkerProcess, list[bytes]], None] | None = None,
) -> Outcome:
    """Publish ``events`` (Avro batches), run a worker (optionally kill -9 it once and
    restart), move event time on with heartbeats, and read every output topic.

    ``during(worker, rest)``: called once the first half of the records is published
    and the worker started; it must publish ``rest`` itself (to partition 0), e.g.
    after cutting the broker off for a while.
    """
    assert kill_after_s is None or during is None
    enc = AvroEncoder()
    bootstrap = settings.kafka_bootstrap_servers
    records = [enc.batch(events[i : i + 200]) for i in range(0, len(events), 200)]
    split = kill_after_s is not None or during is not None
    half = len(records) // 2 if split else len(records)
    # One input partition keeps the scenario in event-time order, as one platform's
    # stream is; across partitions a 7-day jump would make earlier events "late".
    produce(bootstrap, settings.topic_events, records[:half], partition=0)
    worker = start_worker("worker-a")
    if during is not None:
        during(worker, records[half:])
    if kill_after_s is not None:
        time.sleep(kill_after_s)
        worker.kill9()
        produce(bootstrap, settings.topic_events, records[half:], partition=0)
        worker = start_worker("worker-b")
    # Let the worker catch up before event time moves on: heartbeats model live traffic,
    # where event time advances about a second per second, not 40 minutes at once over
    # a backlog (findings routed between partitions must land before windows close).
    consume_until_quiet(bootstrap, settings.topic_subjects, quiet_s=3)
    last = max(e["event_time"] for e in events)
    active = next(i for i in registry if i["status"] == "active" and i["kind"] != "human")
    for n, minutes in enumerate(HEARTBEAT_MINUTES):
        time.sleep(3.0)
        beat = {
            "event_id": str(uuid.UUID(int=n + 1)),
            "event_type": "task.started",
            "event_time": last + minutes * MINUTE,
            "platform": "heartbeat",
            "identity_id": active["identity_id"],
            "task_id": f"heartbeat-{n}",
            "on_behalf_of": active["owner"],
        }
        produce(bootstrap, settings.topic_events, [enc.event(beat)], partition=0)
    time.sleep(3)
    out = Outcome()
    for rec in consume_until_quiet(bootstrap, settings.topic_subjects, quiet_s=5):
        assert rec.value is not None
        out.seen += [c.event for c in copies(decode_subject_batch(rec.value)[1]) if c.primary]
    out.alerts = [
        orjson.loads(r.value)
        for r in consume_until_quiet(bootstrap, settings.topic_alerts, quiet_s=3)
        if r.value is not None
    ]
    codec = MetricCodec()
    out.metrics = [
        codec.decode(r.value).to_dict()
        for r in consume_until_quiet(bootstrap, settings.topic_metrics, quiet_s=3)
        if r.value is not None
    ]
    assert worker.alive(), worker.log_text()[-3000:]
    return out
