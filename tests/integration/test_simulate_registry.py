"""`simulate --load-registry` writes the registry that matches its seed (issue 16, item 1)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis

from pipeline.embedded.ports import free_port
from pipeline.simulate import Simulator

pytestmark = pytest.mark.integration


def _simulate(redis_url: str, prefix: str, tmp_path: Path, *args: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "GOVPIPE_"))}
    env.update(REDIS_URL=redis_url, GOVPIPE_REDIS_KEY_PREFIX=prefix)
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "simulate", "--out", str(tmp_path / "e.jsonl"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, proc.stderr


def test_load_registry_of_the_seed(redis_url: str, tmp_path: Path) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}:nhi:"
    rc, err = _simulate(
        redis_url, prefix, tmp_path, "--seed", "1", "--count", "10", "--load-registry"
    )
    assert rc == 0, err
    expected = {e["identity_id"] for e in Simulator(1).registry()}
    assert (
        f"simulate: loaded the identity registry of seed 1 ({len(expected)} identities) into "
        f"Redis at {redis_url}, key prefix {prefix}"
    ) in err
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        keys = set(client.scan_iter(match=f"{prefix}identity:*", count=1000))
    finally:
        client.close()
    assert keys == {f"{prefix}identity:{i}" for i in expected}


def test_load_registry_without_redis_is_one_line(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    rc, err = _simulate(url, "nhi:", tmp_path, "--count", "1", "--load-registry")
    assert rc == 1
    assert err.strip().splitlines() == [
        f"govpipe: cannot write the identity registry to Redis at {url} (ConnectionError): "
        "start one with `govpipe services` and export the lines it prints, or set REDIS_URL"
    ]
