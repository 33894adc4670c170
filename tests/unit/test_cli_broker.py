"""A missing or wrong KAFKA_BOOTSTRAP_SERVERS: one line naming the address, no traceback,
no librdkafka flood, a non-zero exit within a few seconds (issue 16, item 3)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.commands._kafka import _RateLimit
from pipeline.embedded.ports import free_port


def _govpipe(args: list[str], bootstrap: str, tmp_path: Path) -> tuple[int, str, str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "GOVPIPE_"))}
    env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    subprocess.run(
        [sys.executable, "-m", "pipeline", "simulate", "--out", str(path), "--count", "5"],
        check=True,
        capture_output=True,
    )
    return path


COMMANDS = [
    ["tail", "alerts"],
    ["topics", "create"],
    ["report", "--out", "r.html"],
    ["publish", "EVENTS"],
    ["simulate", "--duration", "5"],
    ["dlq", "replay", "--dry-run"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_closed_port_gives_one_line(command: list[str], tmp_path: Path, events_file: Path) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    args = [str(events_file) if a == "EVENTS" else a for a in command]
    rc, out, err, elapsed = _govpipe(args, address, tmp_path)
    assert rc != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [
        f"govpipe: cannot reach the Kafka broker at {address} (connection refused): start one "
        "with `govpipe services` and export the lines it prints, or set KAFKA_BOOTSTRAP_SERVERS"
    ], err
    assert "Traceback" not in err + out
    assert "%3|" not in err + out
    assert elapsed < 10


def test_port_that_is_not_kafka(tmp_path: Path) -> None:
    """Something listens but never speaks Kafka: still one line, within seconds."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        address = f"127.0.0.1:{server.getsockname()[1]}"
        rc, _out, err, elapsed = _govpipe(["tail", "alerts"], address, tmp_path)
    assert rc == 1
    assert err.strip().splitlines() == [
        f"govpipe: cannot reach the Kafka broker at {address} (no Kafka metadata within 5s): "
        "start one with `govpipe services` and export the lines it prints, or set "
        "KAFKA_BOOTSTRAP_SERVERS"
    ]
    assert "%3|" not in err
    assert elapsed < 15


def test_librdkafka_lines_are_rate_limited() -> None:
    limit = _RateLimit(window_s=60)

    def record(fac: str) -> logging.LogRecord:
        return logging.LogRecord(
            "govpipe.kafka", logging.ERROR, __file__, 1, "%s [%s] %s", (fac, "c", "x"), None
        )

    assert limit.filter(record("FAIL"))
    assert not any(limit.filter(record("FAIL")) for _ in range(100))
    assert limit.filter(record("ERROR"))  # another facility has its own window
    limit.window_s = 0
    again = record("FAIL")
    assert limit.filter(again)
    assert "100 similar lines suppressed" in again.getMessage()
