"""Registry readiness in a real worker (issue 15 item 2): without the registry marker the
worker is degraded, not down, and still processes every event; once `govpipe identities
load` runs it says so once and `/` and `govpipe_registry_ready` follow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from pipeline.codec import encode_json_batch
from tests.integration.test_observability import scrape, wait_for
from tests.support.events import make_event
from tests.support.kafka import produce

pytestmark = pytest.mark.integration

REGISTRY = "identities:\n" + "".join(
    f"  - {{identity_id: agent-{i:03d}, kind: ai_agent, owner: owner-{i % 5}, team: t}}\n"
    for i in range(50)
)


def health(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
        assert resp.status == 200  # degraded is not down: probes keep the worker
        body: dict[str, Any] = json.loads(resp.read())
        return body


def wait_health(port: int, status: str, timeout: float = 40.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            body = health(port)
            if body["status"] == status:
                return body
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"health never {status}: {body}")


def test_missing_registry_degrades_the_worker_until_it_is_loaded(
    settings_factory: Any, worker_factory: Any, redis_url: str, tmp_path: Path
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}:nhi:"  # empty: no marker, no identities
    settings = settings_factory(redis_key_prefix=prefix)
    worker = worker_factory(settings).start()
    port, bootstrap = settings.web_port, settings.kafka_bootstrap_servers

    body = wait_health(port, "DEGRADED")
    assert f"marker {prefix}registry absent" in body["reasons"][0]
    assert "govpipe identities load FILE" in body["reasons"][0]
    assert scrape(port)["govpipe_registry_ready"] == 0

    # Events keep flowing meanwhile (their identities are unknown), none dropped.
    produce(
        bootstrap, settings.topic_events, [encode_json_batch(make_event(i) for i in range(200))]
    )
    samples = wait_for(port, 'govpipe_events_out_total{stage="1"}', 200)
    assert not any(
        name.startswith("govpipe_dlq_records_total") and v for name, v in samples.items()
    )

    registry = tmp_path / "identities.yaml"
    registry.write_text(REGISTRY)
    env = {**os.environ, "REDIS_URL": redis_url, "GOVPIPE_REDIS_KEY_PREFIX": prefix}
    loaded = subprocess.run(
        [sys.executable, "-m", "pipeline", "identities", "load", str(registry)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert loaded.returncode == 0, loaded.stderr

    body = wait_health(port, "OK")
    assert body["registry"]["ready"] is True and body["registry"]["identities"] == 50
    assert body["registry"]["generation"] == 1
    samples = scrape(port)
    assert samples["govpipe_registry_ready"] == 1
    assert abs(samples["govpipe_registry_loaded_timestamp_seconds"] - time.time()) < 120

    log = worker.log_text()
    assert log.count("identity registry not ready") == 1, log[-3000:]
    assert "identity registry ready again: 50 identities" in log
    assert worker.alive()
