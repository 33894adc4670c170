"""Integration fixtures: one real broker (Tansu, or KAFKA_BOOTSTRAP_SERVERS when the
test run is pointed at an Apache Kafka) and a real Redis, shared by the session;
every test gets its own topics, app id, data dir, web port and Redis database."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from pipeline.admin import create_topics
from pipeline.embedded import EmbeddedBroker, LocalRedis
from pipeline.embedded.ports import free_port
from pipeline.settings import Settings, load_settings
from tests.support.worker import WorkerProcess

#: Parallel test sessions on one machine each take their own database, and so does
#: each pytest-xdist worker of one session (gw0 the base, gw1 the next, ...): a
#: session empties its database of test keys when it starts.
REDIS_TEST_DB = int(os.environ.get("GOVPIPE_TEST_REDIS_DB", "12")) + int(
    os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0
)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    external = os.environ.get("GOVPIPE_TEST_KAFKA")
    if external:
        yield external
        return
    broker = EmbeddedBroker().start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


#: Key patterns the integration tests write in their database: the default registry
#: prefix and the per-test ``t<tag>:nhi:`` prefixes.
TEST_KEY_PATTERNS = ("nhi:*", "t*:nhi:*")


def _clean_test_keys(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        for pattern in TEST_KEY_PATTERNS:
            keys = list(client.scan_iter(match=pattern, count=1000))
            for i in range(0, len(keys), 1000):
                client.delete(*keys[i : i + 1000])
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The tests' own Redis database, emptied of test keys before and after the session."""
    local = LocalRedis(f"redis://127.0.0.1:6379/{REDIS_TEST_DB}").start()
    _clean_test_keys(local.url)
    try:
        yield local.url
    finally:
        _clean_test_keys(local.url)
        local.stop()


@pytest.fixture
def settings_factory(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> Callable[..., Settings]:
    """Settings with names unique to this test; topics are created on the broker."""

    def make(**overrides: object) -> Settings:
        tag = uuid.uuid4().hex[:8]
        values: dict[str, object] = {
            "kafka_bootstrap_servers": kafka_bootstrap,
            "redis_url": redis_url,
            "app_id": f"gp-test-{tag}",
            "topic_events": f"t{tag}.agent.events.v1",
            "topic_dlq": f"t{tag}.agent.events.dlq.v1",
            "topic_alerts": f"t{tag}.governance.alerts.v1",
            "topic_metrics": f"t{tag}.governance.metrics.v1",
            "topic_evidence": f"t{tag}.governance.evidence.v1",
            "topic_subjects": f"t{tag}.govpipe.subjects.v1",
            "data_dir": tmp_path / f"data-{tag}",
            "web_port": free_port(),
            "events_partitions": 3,
            "subjects_partitions": 3,
            "output_partitions": 1,
        }
        values.update(overrides)
        settings = load_settings(**values)
        results = create_topics(settings)
        assert all(r.status != "failed" for r in results), results
        return settings

    return make


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def make(settings: Settings, name: str = "worker") -> WorkerProcess:
        proc = WorkerProcess(settings, tmp_path / f"{name}.log")
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.stop()
