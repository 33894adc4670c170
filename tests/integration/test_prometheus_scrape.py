"""A real Prometheus server scrapes a running worker, and a query over the scraped data
returns its event counter (issue 16: the dashboard and the rules query what Prometheus
really stores, not only what the page prints).

The server is Debian's ``prometheus`` package (.ci/run installs it): started on a free
port with a temporary config and storage directory, scraping every second, and stopped
at the end of the test. Skipped, saying so, when the binary is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.codec import encode_json_batch
from pipeline.embedded.ports import free_port
from tests.support.events import make_event
from tests.support.kafka import produce

pytestmark = pytest.mark.integration

#: The same job name the alert rules select (deploy/prometheus/govpipe-rules.yml).
JOB = "govpipe"


class PrometheusServer:
    def __init__(self, binary: str, workdir: Path, targets: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.log_path = workdir / "prometheus.log"
        config = workdir / "prometheus.yml"
        config.write_text(
            json.dumps(  # JSON is YAML: no templating of the config text
                {
                    "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                    "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": targets}]}],
                }
            )
        )
        self.args = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1h",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.args,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"prometheus exited:\n{self.log()}"
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            assert time.monotonic() < deadline, f"prometheus not ready:\n{self.log()}"
            time.sleep(0.2)

    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace")[-3000:]

    def query(self, promql: str) -> list[dict[str, Any]]:
        qs = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{qs}", timeout=5) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        pytest.skip(
            "prometheus not found: install Debian's `prometheus` package "
            "(apt-get install prometheus; .ci/run does)"
        )
    return found


@pytest.fixture
def prometheus_factory(tmp_path: Path, prometheus_binary: str) -> Iterator[Any]:
    started: list[PrometheusServer] = []

    def make(targets: list[str]) -> PrometheusServer:
        workdir = tmp_path / f"prometheus-{len(started)}"
        workdir.mkdir()
        server = PrometheusServer(prometheus_binary, workdir, targets)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


def wait_for_value(
    server: PrometheusServer, promql: str, minimum: float, timeout: float = 60.0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    result: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        result = server.query(promql)
        if result and float(result[0]["value"][1]) >= minimum:
            return result
        time.sleep(0.5)
    raise AssertionError(f"{promql} never reached {minimum}: {result}\n{server.log()}")


def test_prometheus_scrapes_the_worker(
    settings_factory: Any, worker_factory: Any, prometheus_factory: Any
) -> None:
    settings = settings_factory()
    worker = worker_factory(settings).start()
    target = f"127.0.0.1:{settings.web_port}"
    server = prometheus_factory([target])

    up = wait_for_value(server, f'up{{job="{JOB}"}}', 1)
    assert up[0]["metric"]["instance"] == target

    events = [make_event(i) for i in range(200)]
    produce(settings.kafka_bootstrap_servers, settings.topic_events, [encode_json_batch(events)])

    counter = f'govpipe_events_in_total{{job="{JOB}", stage="1"}}'
    (sample,) = wait_for_value(server, counter, 200)
    assert sample["metric"]["instance"] == target
    assert float(sample["value"][1]) == 200
    # The dashboard's throughput query works over the stored series too.
    rate = server.query(f"sum by (stage) (rate(govpipe_events_in_total{{job='{JOB}'}}[1m]))")
    assert {r["metric"]["stage"] for r in rate} >= {"1"}
    assert worker.alive()
