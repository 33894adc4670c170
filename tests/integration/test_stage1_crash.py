"""Crash safety of stage 1: kill -9 the worker mid-stream five times; nothing is lost.

faust-streaming can skip a block of records after a restart (upstream #596,
docs/internals.md); this test counts every forwarded event id, so a skip fails it.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from functools import partial

import pytest

from pipeline.codec import AvroEncoder, encode_json_batch
from pipeline.flow.route import copies, decode_subject_batch
from tests.support.events import make_event
from tests.support.kafka import consume_until_quiet, group_caught_up, produce

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOTAL = 100_000
KILLS = 5


def encode_chunk(events: list[dict], rng: random.Random, enc: AvroEncoder) -> list[bytes]:
    out: list[bytes] = []
    i = 0
    while i < len(events):
        size = rng.choice([1, 1, 5, 20, 50])
        chunk = events[i : i + size]
        i += size
        if len(chunk) == 1:
            out.append(enc.event(chunk[0]))
        else:
            out.append(enc.batch(chunk) if rng.random() < 0.5 else encode_json_batch(chunk))
    return out


def test_kill9_five_times_loses_nothing(settings_factory, worker_factory, capsys) -> None:
    settings = settings_factory(batch_max_records=100)
    rng = random.Random(596)
    enc = AvroEncoder()
    events = [make_event(i) for i in range(TOTAL)]
    chunk = TOTAL // (KILLS + 1)
    bootstrap = settings.kafka_bootstrap_servers
    kills_done = 0
    for n in range(KILLS + 1):
        part = events[n * chunk : (n + 1) * chunk if n < KILLS else TOTAL]
        produce(bootstrap, settings.topic_events, encode_chunk(part, rng, enc))
        worker = worker_factory(settings, name=f"worker-{n}").start(timeout=90)
        if n < KILLS:
            time.sleep(rng.uniform(0.3, 2.0))
            worker.kill9()
            kills_done += 1
    ids: Counter[str] = Counter()
    # The last worker first waits for the killed members to leave its group: quiet
    # then means "not started", so reading also waits for it to commit every input.
    caught_up = partial(group_caught_up, bootstrap, settings.app_id, settings.topic_events)
    for rec in consume_until_quiet(
        bootstrap, settings.topic_subjects, quiet_s=8, max_s=300, until=caught_up
    ):
        assert rec.value is not None
        _, items = decode_subject_batch(rec.value)
        ids.update(c.event["event_id"] for c in copies(items) if c.primary)
    worker.stop()
    missing = {e["event_id"] for e in events} - set(ids)
    duplicates = sum(c - 1 for c in ids.values())
    with capsys.disabled():
        print(
            f"\n[crash] {kills_done} kill -9 restarts, {TOTAL} events: "
            f"{len(ids)} forwarded, {len(missing)} missing, {duplicates} duplicates "
            f"({duplicates / TOTAL:.2%})"
        )
    assert not missing, f"{len(missing)} events lost after kill -9 restarts"
