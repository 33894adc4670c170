"""`govpipe report` through the real broker, then the page in a real headless browser."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from pipeline.metrics.codec import MetricCodec
from pipeline.report import build_report, summarise
from pipeline.report.charts import SAFE_COLOUR, SUCCESS_COLOUR
from pipeline.report.sample import make_sample, sample_data
from pipeline.report.screenshot import find_chromium, page_height, screenshot
from pipeline.settings import Settings

pytestmark = pytest.mark.integration

SEED = 11
MINUTES = 45
HOSTILE_ID = "<script>document.title='pwned'</script>"
HOSTILE_ALERTS = 60


def publish_sample(settings: Settings) -> None:
    sample = make_sample(SEED, minutes=MINUTES)
    producer = Producer({**settings.confluent_config(), "linger.ms": 20})
    for key, value in sample.metric_values(MetricCodec.from_settings(settings)):
        producer.produce(settings.topic_metrics, value, key=key)
    for key, value in sample.alert_values():
        producer.produce(settings.topic_alerts, value, key=key)
    # hostile and broken records: escaped or skipped, never a crash (enough hostile
    # alerts to make their identity the top offender, so the page shows it)
    for i in range(HOSTILE_ALERTS):
        hostile = {
            "alert_id": f"h{i}",
            "detector": "SP-06",
            "severity": "high",
            "time": sample.metrics[0].window_start + 1000 * i,
            "identity_id": HOSTILE_ID,
        }
        producer.produce(settings.topic_alerts, orjson.dumps(hostile))
    producer.produce(settings.topic_alerts, b"not json")
    producer.produce(settings.topic_metrics, b"\x00\x00\x00\x00\x09junk")
    assert producer.flush(30) == 0


def test_report_from_topics_renders_in_a_browser(settings_factory, tmp_path: Path) -> None:
    settings = settings_factory(output_partitions=2)
    publish_sample(settings)
    out = tmp_path / "report.html"

    built = build_report(settings, out, idle_s=1.0, max_seconds=60)

    expected = summarise(sample_data(SEED, minutes=MINUTES))
    s = built.summary
    assert built.data.metrics_skipped == 1 and built.data.alerts_skipped == 1
    assert s.completion == expected.completion and s.governance == expected.governance
    assert s.alerts_total == expected.alerts_total + HOSTILE_ALERTS
    assert s.metric_windows == MINUTES and s.window_size_ms == 60_000
    page = out.read_text(encoding="utf-8")
    assert "<script" not in page
    assert "&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;" in page
    assert "http://" not in page and "https://" not in page
    assert s.identities[0].name == HOSTILE_ID

    browser = find_chromium()
    if browser is None:
        pytest.skip("chromium not installed: apt-get install chromium to run the browser check")
    png = screenshot(out, tmp_path / "report.png", width=1280, browser=browser)
    data = png.read_bytes()
    assert len(data) > 20_000, len(data)
    width, height, pixels = decode_png(data, max_rows=1000)
    # the whole page, measured, not cut at a fixed 2,000 px
    assert (width, height) == (1280, page_height(browser, out, 1280))
    assert height > 2000
    colours = {pixels[i : i + 3] for i in range(0, len(pixels), 3 * 7)}
    assert len(colours) > 50, "the page rendered as (nearly) one colour"
    # the legend swatches and headline figures use the two series colours exactly:
    # the page's own CSS and SVG were applied by the browser
    for colour in (SUCCESS_COLOUR, SAFE_COLOUR):
        rgb = bytes.fromhex(colour.removeprefix("#"))
        assert rgb in {pixels[i : i + 3] for i in range(0, len(pixels), 3)}, colour


def decode_png(data: bytes, max_rows: int) -> tuple[int, int, bytes]:
    """(width, height, RGB bytes of the first ``max_rows`` rows) of an 8-bit RGB/RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    width = height = 0
    channels = 3
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour_type = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour_type in (2, 6), (depth, colour_type)
            channels = 4 if colour_type == 6 else 3
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompressobj().decompress(idat, 0)
    stride = width * channels
    rows: list[bytearray] = []
    prev = bytearray(stride)
    for r in range(min(height, max_rows)):
        start = r * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = line[i - channels] if i >= channels else 0
                b, c = prev[i], prev[i - channels] if i >= channels else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 0xFF
        rows.append(line)
        prev = line
    rgb = bytearray()
    for line in rows:
        if channels == 3:
            rgb += line
        else:
            for i in range(0, len(line), 4):
                rgb += line[i : i + 3]
    return width, height, bytes(rgb)


def test_report_since_until_team_from_the_command_line(
    settings_factory, redis_url: str, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys
    import uuid

    import redis

    from pipeline.report.scope import iso
    from pipeline.settings import settings_env

    settings = settings_factory(output_partitions=1)
    sample = make_sample(SEED, minutes=MINUTES)
    publish_sample(settings)
    starts = sorted({r.window_start for r in sample.metrics})
    since, until = starts[10], starts[20]
    team = next(r.dimension_value for r in sample.metrics if r.dimension == "team")
    prefix = f"t{uuid.uuid4().hex[:8]}:nhi:"
    ids = sorted({a["identity_id"] for a in sample.alerts if a.get("identity_id")})
    client = redis.Redis.from_url(redis_url)
    for i, identity in enumerate(ids):  # every other identity is in the team
        client.hset(f"{prefix}identity:{identity}", "team", team if i % 2 == 0 else "other")
    client.close()
    in_team = set(ids[::2])

    out = tmp_path / "scoped.html"
    env = {**os.environ, **settings_env(settings), "GOVPIPE_REDIS_KEY_PREFIX": prefix}
    done = subprocess.run(
        [
            sys.executable, "-m", "pipeline", "report", "--out", str(out), "--idle", "1",
            "--since", iso(since), "--until", str(until), "--team", team,
        ],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"limited to team {team} · since {iso(since)} · until {iso(until)}" in done.stdout
    assert "(10 global windows)" in done.stdout  # the team's windows in [since, until)
    page = out.read_text(encoding="utf-8")
    assert f"Limited to <b>team {team}" in page
    assert f"{iso(since)[:10]} {iso(since)[11:16]} → {iso(until)[11:16]} UTC" in page

    from pipeline.report.collect import report_data
    from pipeline.report.scope import Scope, apply_scope

    data = report_data(
        (v for _, v in sample.metric_values(MetricCodec())),
        (v for _, v in sample.alert_values()),
    )
    scoped = apply_scope(
        data, Scope(since, until, team), lambda got: {i: team for i in got if i in in_team}
    )
    expected = {a["alert_id"] for a in scoped.alerts}
    assert expected and all(since <= a["time"] < until for a in scoped.alerts)
    assert f"{len(expected)} distinct alerts" in done.stdout

    bad = subprocess.run(
        [sys.executable, "-m", "pipeline", "report", "--since", "yesterday"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "'yesterday' is not a time" in bad.stderr


def test_report_writes_an_evidence_page_per_task_with_findings(
    settings_factory, tmp_path: Path
) -> None:
    """Alerts and dossiers through the real broker, `govpipe report` as a user runs it:
    one page per task an alert names (the SP-02 task of the evidence must-show, and a
    hostile task id), linked from the report and linking back; no page without a
    dossier; the pages render in headless Chromium."""
    import os
    import re
    import subprocess
    import sys

    from pipeline.evidence.codec import EvidenceCodec, record_key
    from pipeline.report.dossiers import EVIDENCE_DIR, evidence_file_name
    from pipeline.settings import settings_env
    from tests.unit.evidence import _scenario as sc
    from tests.unit.evidence.test_trace_views import record_of

    settings = settings_factory(output_partitions=2)
    hostile_task = "../../<script>x</script>"
    record = record_of([*sc.events(), sc.late_revocation()], [sc.sp02_alert()])
    clean = record_of(sc.clean_events(), task="task-clean")
    hostile = {**clean, "task_id": hostile_task, "platform": HOSTILE_ID}
    codec = EvidenceCodec(topic=settings.topic_evidence, registry_url=settings.schema_registry_url)
    producer = Producer({**settings.confluent_config(), "linger.ms": 20})
    for dossier in (record, clean):
        producer.produce(settings.topic_evidence, codec.encode(dossier), key=record_key(dossier))
    producer.produce(settings.topic_evidence, orjson.dumps(hostile), key=b"hostile")
    producer.produce(settings.topic_evidence, b"not a dossier")
    alerts = [
        sc.sp02_alert(),
        {"alert_id": "h1", "detector": "AT-01", "severity": "high", "time": sc.T0,
         "task_id": hostile_task},
        {"alert_id": "n1", "detector": "SP-01", "severity": "low", "time": sc.T0 - 1,
         "task_id": "task-without-dossier"},
    ]  # fmt: skip
    for alert in alerts:
        producer.produce(settings.topic_alerts, orjson.dumps(alert))
    assert producer.flush(30) == 0

    out = tmp_path / "site" / "report.html"
    env = {**os.environ, **settings_env(settings)}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "report", "--out", str(out), "--idle", "1"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "2 evidence pages in" in done.stdout and "for 3 tasks with findings" in done.stdout
    assert "1 evidence records did not decode" in done.stdout

    folder = out.parent / EVIDENCE_DIR
    names = {evidence_file_name(sc.TASK), evidence_file_name(hostile_task)}
    assert {p.name for p in folder.iterdir()} == names
    assert sorted(p.name for p in tmp_path.rglob("*.html")) == sorted([*names, "report.html"])
    report = out.read_text("utf-8")
    assert "<script" not in report
    links = re.findall(r'href="([^"]*)"', report)
    assert sorted(links) == sorted(f"{EVIDENCE_DIR}/{n}" for n in names)
    assert "task-without-dossier" in report and "no dossier" in report
    page = (folder / evidence_file_name(sc.TASK)).read_text("utf-8")
    assert re.findall(r'href="([^"]*)"', page) == ["../report.html"]
    assert sc.SP02_ALERT_ID in page and "sales-ops" in page
    bad = (folder / evidence_file_name(hostile_task)).read_text("utf-8")
    assert "<script" not in bad and "&lt;script&gt;x&lt;/script&gt;" in bad

    browser = find_chromium()
    if browser is None:
        pytest.skip("chromium not installed: apt-get install chromium to run the browser check")
    png = screenshot(folder / evidence_file_name(sc.TASK), tmp_path / "page.png", browser=browser)
    assert len(png.read_bytes()) > 20_000


def test_report_says_when_the_evidence_topic_is_empty(settings_factory, tmp_path: Path) -> None:
    settings = settings_factory(output_partitions=1)
    producer = Producer(settings.confluent_config())
    alert = {"alert_id": "a1", "detector": "SP-02", "severity": "medium", "time": 1,
             "task_id": "task-1"}  # fmt: skip
    producer.produce(settings.topic_alerts, orjson.dumps(alert))
    assert producer.flush(30) == 0
    out = tmp_path / "report.html"
    built = build_report(settings, out, idle_s=1.0, max_seconds=60)
    assert built.pages == () and not (tmp_path / "evidence").exists()
    assert built.tasks.note is not None and "is empty (evidence off?" in built.tasks.note
    assert "is empty (evidence off?" in out.read_text("utf-8")
