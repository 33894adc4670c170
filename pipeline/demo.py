"""`govpipe demo`: everything on one machine, with a live view of what the worker finds.

It starts the embedded broker and a Redis of its own (an embedded Valkey; a Redis
at REDIS_URL is never written to), creates topics, loads the simulator's
identity registry, runs one worker process and the simulator (with injected
violations and some hostile records), and shows events/s, the DLQ and the
alert feed until --duration ends or Ctrl-C. Its temporary directory (worker data
and logs) is removed at the end unless something failed: then it names it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis

from pipeline.admin import create_topics
from pipeline.embedded import EmbeddedServices
from pipeline.embedded.ports import free_port
from pipeline.enrichment.keys import KeySpace
from pipeline.enrichment.registry import parse_registry, write_identities
from pipeline.settings import Settings, settings_env
from pipeline.topicread import open_reader

DEMO_PREFIX = "govpipe-demo:nhi:"
#: (label, numerator, denominator): productivity first, then governance (docs/contracts/metrics.md).
RATES = (
    ("success", "tasks_succeeded", "tasks_completed"),
    ("safe", "tasks_safe", "tasks_completed"),
    ("authorised", "actions_authorized", "actions_total"),
    ("attributable", "actions_attributable", "actions_total"),
    ("ephemeral", "actions_ephemeral", "actions_with_credential"),
    ("revoked", "task_credentials_revoked", "task_credentials_completed"),
    ("meaningful", "approvals_meaningful", "approvals_decided"),
)
COUNTS = tuple(dict.fromkeys(name for _, num, den in RATES for name in (num, den)))
SEVERITY_ORDER = ("critical", "high", "medium", "low")


@dataclass
class DemoView:
    """What the terminal shows; fed by the alerts reader and /metrics scrapes."""

    started: float = field(default_factory=time.monotonic)
    metrics: dict[str, float] = field(default_factory=dict)
    alerts_by_detector: Counter[str] = field(default_factory=Counter)
    alerts_by_severity: Counter[str] = field(default_factory=Counter)
    creates: int = 0
    updates: int = 0
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=8))
    rate: float = 0.0
    #: newest revision of every metric record key
    windows: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)
    _last: tuple[float, float] | None = None

    def add_metric(self, record: dict[str, Any]) -> None:
        key = (
            record["window_start"],
            record["window_size_ms"],
            record["dimension"],
            record["dimension_value"],
        )
        old = self.windows.get(key)
        if old is None or record["revision"] >= old["revision"]:
            self.windows[key] = record

    def governance_table(self) -> list[str]:
        """Per team (and overall), every rate summed over the windows so far."""
        sums: dict[str, Counter[str]] = {}
        for (_, _, dim, value), rec in self.windows.items():
            if dim not in ("global", "team"):
                continue
            name = "ALL" if dim == "global" else str(value)
            total = sums.setdefault(name, Counter())
            for count in COUNTS:  # each once: several rates share a denominator
                total[count] += int(rec.get(count) or 0)
        if not sums:
            return ["(no metric window closed yet: windows close one minute of event time in)"]
        head = f"{'team':16}" + "".join(f"{label:>13}" for label, _, _ in RATES)
        lines = [head]
        for name in sorted(sums, key=lambda n: (n != "ALL", n)):
            total = sums[name]
            cells = []
            for _, num, den in RATES:
                d = total[den]
                cells.append(f"{100 * total[num] / d:>12.1f}%" if d else f"{'-':>13}")
            lines.append(f"{name[:16]:16}" + "".join(cells))
        return lines

    def scrape(self, port: int) -> None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        self.metrics = samples
        now, events = time.monotonic(), samples.get('govpipe_events_in_total{stage="1"}', 0.0)
        if self._last is not None and now > self._last[0]:
            self.rate = (events - self._last[1]) / (now - self._last[0])
        self._last = (now, events)

    def add_alert(self, alert: dict[str, Any]) -> None:
        if alert.get("activity_id") == 1:
            self.creates += 1
            self.alerts_by_detector[str(alert.get("detector"))] += 1
            self.alerts_by_severity[str(alert.get("severity"))] += 1
            who = alert.get("identity_id") or alert.get("approver") or alert.get("credential_id")
            title = (alert.get("finding_info") or {}).get("title", "")
            self.recent.append(
                f"{alert.get('severity', ''):8} {alert.get('detector')}  {title}  [{who}]"
            )
        else:
            self.updates += 1

    def render(self) -> str:
        m = self.metrics
        dlq = {
            k[len('govpipe_dlq_records_total{code="') : -2]: v
            for k, v in m.items()
            if k.startswith("govpipe_dlq_records_total")
        }
        events_in = m.get('govpipe_events_in_total{stage="1"}', 0)
        forwarded = m.get('govpipe_events_out_total{stage="1"}', 0)
        lines = [
            f"govpipe demo — {time.monotonic() - self.started:5.0f} s",
            f"events in  {events_in:>10,.0f}   now {self.rate:>8,.0f}/s   "
            f"forwarded {forwarded:>10,.0f}",
            f"dead-letter {sum(dlq.values()):>9,.0f}   "
            + "  ".join(f"{code}={int(n)}" for code, n in sorted(dlq.items())),
            f"alerts: {self.creates} new, {self.updates} updates   "
            + "  ".join(f"{s}={self.alerts_by_severity[s]}" for s in SEVERITY_ORDER),
            "by detector: "
            + "  ".join(f"{d}={n}" for d, n in sorted(self.alerts_by_detector.items())),
            f"metric windows: {len(self.windows)} records "
            "(productivity: success | governance: safe, authorised, attributable, "
            "ephemeral, revoked on completion, meaningful review)",
            *self.governance_table(),
            "latest:",
            *[f"  {line}" for line in self.recent],
        ]
        return "\n".join(lines)


def _follow(
    settings: Settings, topic: str, handle: Any, stop: threading.Event, view: DemoView
) -> None:
    """Feed every record of ``topic`` to ``handle`` until ``stop``; unreadable ones are
    shown in the feed, never fatal."""
    consumer, _ = open_reader(settings, topic, purpose="demo")
    try:
        while not stop.is_set():
            for msg in consumer.consume(500, timeout=0.5):
                value = msg.value()
                if msg.error() or value is None:
                    continue
                try:
                    handle(value)
                except Exception as exc:
                    view.recent.append(f"unreadable record on {topic} ({type(exc).__name__})")
    finally:
        consumer.close()


def _read_alerts(settings: Settings, view: DemoView, stop: threading.Event) -> None:
    _follow(settings, settings.topic_alerts, lambda v: view.add_alert(orjson.loads(v)), stop, view)


def _read_metrics(settings: Settings, view: DemoView, stop: threading.Event) -> None:
    from pipeline.metrics import MetricCodec

    codec = MetricCodec.from_settings(settings, fmt=settings.metrics_format)
    _follow(
        settings,
        settings.topic_metrics,
        lambda v: view.add_metric(codec.decode(v).to_dict()),
        stop,
        view,
    )


def _load_registry(redis_url: str, registry: list[dict[str, Any]]) -> int:
    entries, problems = parse_registry({"identities": registry})
    if problems:
        raise RuntimeError(f"simulator registry invalid: {problems[:3]}")
    client = redis.Redis.from_url(redis_url)
    try:
        written, _ = write_identities(client, KeySpace(DEMO_PREFIX), entries)
        return written
    finally:
        client.close()


def _cleanup_redis(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=DEMO_PREFIX + "*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])
    finally:
        client.close()


def run_demo(
    base: Settings, duration: float | None, rate: float, seed: int, speed: float = 8.0
) -> int:
    data = Path(tempfile.mkdtemp(prefix="govpipe-demo-"))
    status = 1
    try:
        status = _run_demo(data, base, duration, rate, seed, speed)
        return status
    finally:
        if status == 0:
            shutil.rmtree(data, ignore_errors=True)
        else:
            print(f"govpipe demo: logs kept in {data}", file=sys.stderr)


def _run_demo(
    data: Path, base: Settings, duration: float | None, rate: float, seed: int, speed: float
) -> int:
    from pipeline.simulate import Simulator

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print("govpipe demo: starting the embedded broker and Redis …", file=sys.stderr)
    with EmbeddedServices(base.redis_url.get_secret_value(), key_prefix=DEMO_PREFIX) as services:
        settings = base.model_copy(
            update={
                "kafka_bootstrap_servers": services.broker.bootstrap,
                "redis_url": type(base.redis_url)(services.redis.url),
                "redis_key_prefix": DEMO_PREFIX,
                "data_dir": data / "worker",
                "web_port": free_port(),
                "app_id": f"govpipe-demo-{uuid.uuid4().hex[:6]}",
            }
        )
        create_topics(settings)
        loaded = _load_registry(services.redis.url, Simulator(seed).registry())
        print(f"govpipe demo: {services.describe()}\n  {loaded} identities loaded", file=sys.stderr)
        env = {**os.environ, **settings_env(settings)}
        worker_log = (data / "worker.log").open("wb")
        worker = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "worker"],
            env=env,
            stdout=worker_log,
            stderr=subprocess.STDOUT,
        )
        sim_cmd = [
            sys.executable,
            "-m",
            "pipeline",
            "simulate",
            "--rate",
            str(rate),
            "--seed",
            str(seed),
            "--violation-rate",
            "0.02",
            "--dirty-rate",
            "0.01",
            "--speed",
            str(speed),
        ]
        if duration:
            sim_cmd += ["--duration", str(max(1.0, duration - 10))]
        sim_log = (data / "simulator.log").open("wb")
        simulator = subprocess.Popen(sim_cmd, env=env, stdout=sim_log, stderr=subprocess.STDOUT)
        view = DemoView()
        for target in (_read_alerts, _read_metrics):
            threading.Thread(target=target, args=(settings, view, stop), daemon=True).start()
        tty = sys.stdout.isatty()
        deadline = time.monotonic() + duration if duration else None
        try:
            while not stop.wait(2.0):
                view.scrape(settings.web_port)
                print(
                    ("\x1b[2J\x1b[H" if tty else "") + view.render() + ("" if tty else "\n"),
                    flush=True,
                )
                if worker.poll() is not None:
                    print(
                        f"govpipe demo: the worker exited; see {data / 'worker.log'}",
                        file=sys.stderr,
                    )
                    return 1
                if simulator.poll() not in (None, 0):
                    print(
                        f"govpipe demo: the simulator failed; see {data / 'simulator.log'}",
                        file=sys.stderr,
                    )
                    return 1
                if deadline is not None and time.monotonic() >= deadline:
                    break
        finally:
            stop.set()
            for proc in (simulator, worker):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in (simulator, worker):
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            view.scrape(settings.web_port)
            _cleanup_redis(services.redis.url)
        worker_log.close()
        sim_log.close()
        print("\n== summary ==\n" + view.render())
    return 0
