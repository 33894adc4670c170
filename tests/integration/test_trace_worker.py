"""`govpipe trace task ID` answered by the worker that owns the task, through the real
broker (issue 14: a lookup must not scan a whole topic for every question).

Two stage-2 workers share the subjects partitions; the must-show task's dossier is on
the evidence topic. Asked at either worker, the answer comes from the owner's state
(the other forwards once); the real CLI says it was the worker and prints the dossier.
With both workers stopped, the same command reads the compacted topic, says so, and
prints exactly the same (--json and the terminal view).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest

from pipeline.codec import AvroEncoder
from pipeline.embedded.ports import free_port
from pipeline.evidence.query import task_partition
from pipeline.evidence.remote import Reply, ask_worker
from pipeline.settings import Settings, settings_env
from tests.integration.test_evidence_e2e import REGISTRY, raw, wait_for
from tests.support.kafka import produce
from tests.support.scenario import clear_registry, load_registry
from tests.unit.evidence import _scenario as sc

pytestmark = pytest.mark.integration


def trace(settings: Settings, url: str, *extra: str) -> tuple[str, str]:
    """(stdout, stderr) of `govpipe trace task TASK` asking ``url`` first."""
    env = {**os.environ, **settings_env(settings), "GOVPIPE_TRACE_URL": url, "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "trace", "task", sc.TASK, "--idle", "2", *extra],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return done.stdout.decode(), done.stderr.decode()


def held(url: str, revision: int, timeout: float = 90) -> Reply:
    """The worker at ``url``'s answer, once it holds ``revision`` (after a rebalance)."""
    deadline = time.monotonic() + timeout
    reply = ask_worker(url, sc.TASK)
    while time.monotonic() < deadline:
        reply = ask_worker(url, sc.TASK)
        if reply.held and reply.dossier and reply.dossier["revision"] == revision:
            return reply
        time.sleep(0.5)
    raise AssertionError(f"{url} never answered with revision {revision}: {reply}")


def test_trace_asks_the_owning_worker_and_falls_back_to_the_topic(
    settings_factory, worker_factory, redis_url, tmp_path: Path
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}:nhi:"
    settings = settings_factory(redis_key_prefix=prefix, idle_partition_s=2.0)
    second = settings.model_copy(
        update={"web_port": free_port(), "data_dir": tmp_path / "data-second"}
    )
    load_registry(redis_url, prefix, REGISTRY)
    urls = [s.web_advertised_url for s in (settings, second)]
    try:
        events = [raw(e) for e in [*sc.events(), sc.late_revocation()]]
        produce(
            settings.kafka_bootstrap_servers,
            settings.topic_events,
            [AvroEncoder().batch(events)],
            0,
        )
        workers = [
            worker_factory(settings, "first").start(timeout=90),
            worker_factory(second, "second").start(timeout=90),
        ]
        records = wait_for(settings, sc.TASK, lambda d: d["completed_at"] is not None, "at all")
        newest = records[-1]["revision"]

        # Either worker answers from the owner's state: the owner itself, or one hop.
        replies = [held(url, newest) for url in urls]
        owner = replies[0].worker
        assert owner in urls and all(r.worker == owner for r in replies), replies
        assert replies[0].dossier == replies[1].dossier
        partition = task_partition(sc.TASK, settings.subjects_partitions)
        assert all(r.partition == partition for r in replies)

        by_worker = trace(settings, urls[1 - urls.index(owner)], "--json")
        by_worker_text = trace(settings, owner)
        assert f"answered by the worker {owner} (partition {partition})" in by_worker[1]
        assert f"answered by the worker {owner}" in by_worker_text[1]
        assert "topic" not in by_worker[1], by_worker[1]
        (task,) = orjson.loads(by_worker[0])["tasks"]
        assert task["dossier"] == records[-1]
        assert all(w.alive() for w in workers)
        for worker in workers:
            worker.stop()

        # No worker: the compacted topic answers, and the output is the same.
        by_topic = trace(settings, urls[0], "--json")
        by_topic_text = trace(settings, urls[0])
        assert f"answered by the topic {settings.topic_evidence}" in by_topic[1]
        assert f"no worker answered at {urls[0]}" in by_topic[1]
        assert by_topic[0] == by_worker[0]
        assert by_topic_text[0] == by_worker_text[0]
    finally:
        clear_registry(redis_url, prefix)
