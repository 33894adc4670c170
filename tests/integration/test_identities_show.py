"""`identities show`: ISO-8601 UTC times for people, one line for an unknown id (issue 16)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest
import redis

pytestmark = pytest.mark.integration

ISSUED = 1_796_459_568_812  # 2026-12-05T08:32:48.812Z


def _show(redis_url: str, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVPIPE_")}
    env["REDIS_URL"] = redis_url
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "identities", "show", "--key-prefix", prefix, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_show_times_and_unknown(redis_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}:nhi:"
    client = redis.Redis.from_url(redis_url)
    client.hset(
        f"{prefix}credential:c1",
        mapping={"identity_id": "a1", "kind": "static", "issued_at": str(ISSUED)},
    )
    client.close()

    shown = _show(redis_url, prefix, "--credential", "c1")
    assert shown.returncode == 0, shown.stderr
    view = orjson.loads(shown.stdout)["credential"]
    assert view["enrichment"]["issued_at"] == "2026-12-05T08:32:48Z"
    assert view["fields"]["issued_at"] == str(ISSUED)  # the raw hash as stored

    raw = _show(redis_url, prefix, "--credential", "c1", "--epoch-ms")
    assert orjson.loads(raw.stdout)["credential"]["enrichment"]["issued_at"] == ISSUED

    unknown = _show(redis_url, prefix, "UNKNOWN")
    assert unknown.returncode == 1
    assert unknown.stdout == ""
    assert unknown.stderr.strip().splitlines() == [
        f"govpipe: no identity UNKNOWN in the registry (prefix {prefix}, Redis at {redis_url})"
    ]


def _load(redis_url: str, prefix: str, path: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVPIPE_")}
    env["REDIS_URL"] = redis_url
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "identities", "load", "--key-prefix", prefix, path],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_mode_loaded_validated_and_shown(redis_url: str, tmp_path: Path) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}:nhi:"
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "identities:\n"
        "  - {identity_id: a1, kind: ai_agent, mode: reporting}\n"
        "  - {identity_id: a2, kind: ai_agent, mode: semi-autonomous}\n"
    )
    refused = _load(redis_url, prefix, str(bad))
    assert refused.returncode != 0
    assert "identities[1] (a2): mode:" in refused.stderr
    client = redis.Redis.from_url(redis_url)
    assert client.exists(f"{prefix}identity:a1") == 0  # one bad entry: nothing written

    good = tmp_path / "good.yaml"
    good.write_text(
        "identities:\n"
        "  - {identity_id: a1, kind: ai_agent, mode: Reporting}\n"
        "  - {identity_id: a2, kind: ai_agent}\n"
    )
    loaded = _load(redis_url, prefix, str(good))
    assert loaded.returncode == 0, loaded.stderr
    assert client.hget(f"{prefix}identity:a1", "mode") == b"reporting"
    assert client.hget(f"{prefix}identity:a2", "mode") is None
    client.close()
    a1 = orjson.loads(_show(redis_url, prefix, "a1").stdout)["identity"]
    a2 = orjson.loads(_show(redis_url, prefix, "a2").stdout)["identity"]
    assert a1["fields"]["mode"] == "reporting" and a1["enrichment"]["mode"] == "reporting"
    assert "mode" not in a2["fields"] and a2["enrichment"]["mode"] == "autonomous"
