"""`govpipe services` never writes into a Redis it did not start unless told to, and says
where its own is in the export lines; a restart starts clean (issue 16, item 2)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from tests.integration.conftest import REDIS_TEST_DB

pytestmark = pytest.mark.integration

EXISTING = f"redis://127.0.0.1:6379/{REDIS_TEST_DB}"


def _base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "GOVPIPE_"))}
    env["REDIS_URL"] = EXISTING
    env["TMPDIR"] = str(tmp_path)
    return env


@contextmanager
def services(tmp_path: Path, *extra: str) -> Iterator[dict[str, str]]:
    """Run `govpipe services`, yield the variables of its export lines, stop it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "services", "--no-topics", *extra],
        env=_base_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        exports: dict[str, str] = {}
        assert proc.stdout is not None
        while "FAUST_DATADIR" not in exports:
            line = proc.stdout.readline()
            assert line, "services exited before printing its export lines"
            if line.startswith("export "):
                name, _, value = line[len("export ") :].strip().partition("=")
                exports[name] = value
        yield exports
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0


def _govpipe(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _keys(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return sum(1 for _ in client.scan_iter(match="*", count=1000))
    finally:
        client.close()


def test_services_use_their_own_redis_and_restart_clean(tmp_path: Path) -> None:
    if not redis.Redis.from_url(EXISTING).ping():
        pytest.skip("needs a Redis at 127.0.0.1:6379")
    before = _keys(EXISTING)
    registry = Path(__file__).parents[2] / "samples" / "identities.yaml"
    with services(tmp_path) as exports:
        url = exports["REDIS_URL"]
        assert url.startswith("redis://127.0.0.1:") and not url.startswith(
            "redis://127.0.0.1:6379/"
        )
        assert exports["GOVPIPE_REDIS_KEY_PREFIX"] == "nhi:"
        assert "KAFKA_BOOTSTRAP_SERVERS" in exports
        data_dir = Path(exports["FAUST_DATADIR"])
        assert data_dir.is_dir() and data_dir.name.startswith("govpipe-services-")
        env = {**_base_env(tmp_path), **exports}
        loaded = _govpipe(env, "identities", "load", str(registry))
        assert loaded.returncode == 0, loaded.stderr
        assert url in loaded.stdout
        assert _keys(url) > 0
        assert _govpipe(env, "identities", "show", "alice.garcia@example.com").returncode == 0
    assert _keys(EXISTING) == before  # nothing landed in the Redis we did not start
    assert not data_dir.exists()  # nor does the worker's table data outlive the services
    with services(tmp_path) as exports:
        env = {**_base_env(tmp_path), **exports}
        shown = _govpipe(env, "identities", "show", "alice.garcia@example.com")
        assert shown.returncode == 1  # the restart began with an empty registry
    assert not list(tmp_path.glob("govpipe-tansu-*.log"))


def test_existing_redis_only_when_told(tmp_path: Path) -> None:
    if not redis.Redis.from_url(EXISTING).ping():
        pytest.skip("needs a Redis at 127.0.0.1:6379")
    with services(tmp_path, "--existing-redis") as exports:
        assert exports["REDIS_URL"] == EXISTING
        assert exports["GOVPIPE_REDIS_KEY_PREFIX"] == "nhi:"
    time.sleep(0)  # the services wrote nothing themselves
