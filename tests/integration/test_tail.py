"""`govpipe tail` against the real broker: assign() on every partition, bad records warned."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest
from confluent_kafka import Producer

from pipeline.metrics import MetricCodec, MetricWindows, record_key
from pipeline.settings import Settings, settings_env
from pipeline.tailview import clock as tailview_clock
from tests.unit.metrics.factory import BASE, HOUR, MIN, action_deltas, random_actions

pytestmark = pytest.mark.integration


def tail(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "tail", *args, "--from-beginning", "--no-follow"],
        env={**os.environ, **settings_env(settings)},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_tail_metrics_alerts_and_dlq(settings_factory) -> None:
    settings = settings_factory(output_partitions=2)
    windows = MetricWindows([MIN], 0)
    windows.add_all(action_deltas(random_actions(300), [MIN]))
    records = [r for r in windows.advance(BASE + HOUR) if r.dimension == "global"]
    codec = MetricCodec.from_settings(settings)
    producer = Producer(settings.confluent_config())
    for r in records:
        producer.produce(settings.topic_metrics, codec.encode(r), key=record_key(r))
    producer.produce(settings.topic_metrics, b"\x00\x00\x00\x00\x09junk")
    alert = {"detector": "AZ-01", "severity": "high", "activity_id": 1, "time": BASE}
    producer.produce(settings.topic_alerts, orjson.dumps(alert))
    producer.produce(
        settings.topic_dlq,
        b"\x1b[2Jnot json",
        headers=[("error.code", b"invalid_json"), ("source.topic", b"agent.events.v1")],
    )
    assert producer.flush(30) == 0

    metrics = tail(settings, "metrics", "--idle", "1")
    assert metrics.returncode == 0, metrics.stderr
    lines = metrics.stdout.splitlines()
    assert len(lines) == len(records)
    assert all(
        " global  success n/a (0/0) | safe n/a (0/0) ‖ authorised " in line for line in lines
    )
    assert "skipped, undecodable" in metrics.stderr

    as_json = tail(settings, "metrics", "--json", "--limit", "2")
    assert [orjson.loads(line)["dimension"] for line in as_json.stdout.splitlines()] == [
        "global",
        "global",
    ]

    alerts = tail(settings, "alerts", "--idle", "1")
    assert "NEW high     AZ-01" in alerts.stdout

    dlq = tail(settings, "dlq", "--idle", "1")
    assert dlq.stdout.startswith("invalid_json src=agent.events.v1/?@? ")
    assert "\x1b" not in dlq.stdout


def test_tail_says_it_waits_then_shows_new_records(settings_factory) -> None:
    settings = settings_factory(output_partitions=2)
    producer = Producer(settings.confluent_config())
    old = {"detector": "AZ-01", "severity": "high", "activity_id": 1, "time": BASE}
    producer.produce(settings.topic_alerts, orjson.dumps(old))
    assert producer.flush(30) == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "tail", "alerts", "--limit", "1"],
        env={**os.environ, **settings_env(settings)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line == (
            f"waiting for new records on {settings.topic_alerts}… "
            "(1 already there: --from-beginning to read them)\n"
        )
        new = {**old, "detector": "SP-01", "evidence": {"facts": {"completed_at": BASE}}}
        producer.produce(settings.topic_alerts, orjson.dumps(new))
        assert producer.flush(30) == 0
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    (shown,) = out.splitlines()
    assert " NEW high     SP-01" in shown and "AZ-01" not in shown
    assert (
        shown.startswith(tailview_clock(BASE)) and f"completed_at={tailview_clock(BASE)}" in shown
    )
