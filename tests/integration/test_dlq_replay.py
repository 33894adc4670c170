"""`govpipe dlq replay` through the real broker: code filter, redacted skip, bytes unchanged."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from confluent_kafka import Producer

from pipeline.commands.dlq import ReplayOptions, replay
from pipeline.dlqreplay import ReplayFilter
from pipeline.settings import Settings, settings_env
from tests.support.kafka import consume_until_quiet

pytestmark = pytest.mark.integration

SECRETISH = b'{"event_id": "e5", "attributes": {"token": "[REDACTED:github_token]"}'


def dead_letters(settings: Settings) -> list[tuple[bytes | None, bytes, str, bool]]:
    """(key, value, error.code, redacted) published to the DLQ, in offset order."""
    return [
        (b"agent-1", b'{"event_id": "e1", "event_type": "action", ', "invalid_json", False),
        (None, b'{"event_id": "e2", "event_type": "action"}', "missing_field", False),
        (b"agent-3", SECRETISH, "invalid_json", True),
        (b"agent-4", b'{"event_id": "e4", "event_type": "teleport"}', "unknown_event_type", False),
        (b"\xff\xfekey", b"\x1b[2J\x00\xffnot json at all", "invalid_json", False),
    ]


def publish_dead_letters(settings: Settings) -> list[tuple[bytes | None, bytes, str, bool]]:
    records = dead_letters(settings)
    producer = Producer(settings.confluent_config())
    for i, (key, value, code, redacted) in enumerate(records):
        headers = [
            ("error.code", code.encode()),
            ("error.message", b"record is not valid"),
            ("source.topic", settings.topic_events.encode()),
            ("source.partition", b"1"),
            ("source.offset", str(100 + i).encode()),
        ]
        if redacted:
            headers.append(("redacted", b"true"))
        producer.produce(settings.topic_dlq, value=value, key=key, headers=headers, partition=0)
    assert producer.flush(30) == 0
    return records


def test_replay_by_code_keeps_bytes_and_key_and_skips_redacted(settings_factory) -> None:
    settings = settings_factory()  # one DLQ partition: offsets are 0..4 in publish order
    records = publish_dead_letters(settings)

    out = io.StringIO()
    dry = replay(
        settings,
        ReplayOptions(rule=ReplayFilter(frozenset({"invalid_json"})), dry_run=True, idle_s=1),
        out=out,
    )
    assert dict(dry.counts.replay) == {"invalid_json": 2}
    assert dict(dry.counts.redacted) == {"invalid_json": 1}
    assert dict(dry.counts.other_code) == {"missing_field": 1, "unknown_event_type": 1}
    assert out.getvalue() == ""  # nothing printed per record without --show

    out = io.StringIO()
    done = replay(
        settings,
        ReplayOptions(rule=ReplayFilter(frozenset({"invalid_json"})), show=True, idle_s=1),
        out=out,
    )
    assert done.counts.replayed == 2 and done.target == settings.topic_events
    shown = out.getvalue()
    assert shown.count("\n") == 2 and "p0@0 invalid_json" in shown and "p0@4 invalid_json" in shown
    assert "\x1b" not in shown and "\\x1b[2J" in shown  # escaped preview, never raw bytes

    replayed = consume_until_quiet(settings.kafka_bootstrap_servers, settings.topic_events, 2)
    by_value = {r.value: r for r in replayed}
    assert len(replayed) == 2
    for offset in (0, 4):
        key, value, _, _ = records[offset]
        got = by_value[value]  # value byte for byte
        assert got.key == key
        assert got.headers == {"replayed.from": f"{settings.topic_dlq}@0:{offset}".encode()}
    assert SECRETISH not in by_value  # redacted: skipped


def test_cli_replay_with_limit_and_target(settings_factory) -> None:
    settings = settings_factory()
    records = publish_dead_letters(settings)
    target = settings.topic_alerts  # any existing topic stands in for a side topic

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pipeline", "dlq", "replay", "--idle", "1", *args],
            env={**os.environ, **settings_env(settings)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    dry = cli("--dry-run", "--include-redacted")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[0] == (
        f"would replay 5 of 5 dead letter(s) read from {settings.topic_dlq} "
        f"to {settings.topic_events}"
    )
    assert "invalid_json" in dry.stdout and "REDACTED" not in dry.stdout

    skipped = cli("--dry-run", "--code", "invalid_json,missing_field")
    assert "would replay 3 of 5" in skipped.stdout
    assert "skipped 1 with other codes (unknown_event_type 1)" in skipped.stdout
    assert "skipped 1 redacted (invalid_json 1)" in skipped.stdout

    sent = cli(
        "--code", "missing_field", "--code", "unknown_event_type", "--limit", "1", "--to", target
    )
    assert sent.returncode == 0, sent.stderr
    assert f"replayed 1 of 2 dead letter(s) read from {settings.topic_dlq} to {target}" in (
        sent.stdout
    )
    assert "stopped at --limit" in sent.stdout
    got = consume_until_quiet(settings.kafka_bootstrap_servers, target, 2)
    assert [(r.key, r.value) for r in got] == [(records[1][0], records[1][1])]
    assert consume_until_quiet(settings.kafka_bootstrap_servers, settings.topic_events, 1) == []

    loop = cli("--to", settings.topic_dlq)
    assert loop.returncode == 1 and "DLQ itself" in loop.stderr
