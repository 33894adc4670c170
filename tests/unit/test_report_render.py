"""`govpipe report`: collection helpers, summary numbers and the rendered page (no broker)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import orjson
import pytest

from pipeline.metrics.codec import MetricCodec
from pipeline.metrics.record import MetricRecord, build_record
from pipeline.report import ReportData, render_data, report_data, summarise
from pipeline.report.charts import completion_chart, rate_floor
from pipeline.report.collect import TopicReader, latest_alerts, latest_metrics, parse_alert
from pipeline.report.sample import make_sample, sample_data
from pipeline.report.summary import Point, choose_window_size
from pipeline.settings import load_settings

MIN = 60_000
T0 = 1_764_000_000_000 - 1_764_000_000_000 % 3_600_000
HOSTILE = '<script>alert("x")</script>'


def metric(
    ws: int,
    *,
    dim: str = "global",
    value: str = "all",
    size: int = MIN,
    revision: int = 0,
    **counters: int,
) -> MetricRecord:
    return build_record(
        window_size_ms=size,
        window_start=ws,
        dimension=dim,
        dimension_value=value,
        counters=counters,
        histograms={},
        alerts={},
        revision=revision,
        emitted_at=ws + size + revision,
    )


def alert(detector: str = "SP-01", **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "alert_id": f"id-{detector}-{over.get('identity_id')}-{over.get('approver')}",
        "detector": detector,
        "severity": "high",
        "activity_id": 1,
        "count": 1,
        "time": T0 + 30_000,
        "message": "Long-lived credential used",
        "identity_id": "agent-1",
        "approver": None,
    }
    base.update(over)
    return base


def data_of(metrics: list[MetricRecord], alerts: list[dict[str, Any]]) -> ReportData:
    codec = MetricCodec()
    return report_data(
        [codec.encode(m) for m in metrics],
        [orjson.dumps(a) for a in alerts],
        metrics_topic="m.v1",
        alerts_topic="a.v1",
    )


def page_of(data: ReportData) -> str:
    page, _ = render_data(data, generated_at_ms=T0 + 3_600_000)
    return page


# ---- HTML checks -------------------------------------------------------------------------

VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}
URL_ATTRS = {"src", "href", "xlink:href", "action", "formaction", "poster", "data", "srcset"}


class Checker(HTMLParser):
    """Balanced tags, and every tag/attribute/text seen (for the assertions)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend((k, v or "") for k, v in attrs)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend((k, v or "") for k, v in attrs)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def check_html(page: str) -> Checker:
    checker = Checker()
    checker.feed(page)
    checker.close()
    assert page.startswith("<!DOCTYPE html>")
    assert not checker.errors, checker.errors[:5]
    assert not checker.stack, checker.stack
    return checker


def assert_no_external_resources(page: str, checker: Checker) -> None:
    for name, value in checker.attrs:
        if name in URL_ATTRS:
            assert not re.match(r"\s*(https?:)?//", value, re.I), (name, value)
    assert "url(" not in page.lower()
    assert "@import" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)


# ---- tests ---------------------------------------------------------------------------------


def test_sample_report_has_every_section_and_fetches_nothing() -> None:
    page = page_of(sample_data(seed=3))
    checker = check_html(page)
    text = " ".join(checker.text)
    for heading in (
        "Agent governance report",
        "Successful vs safe completion over time",
        "Governance rates by team",
        "Alerts by detector and severity",
        "Top offending identities",
        "Top offending approvers",
        "How to read this",
    ):
        assert heading in text
    for label in ("Authorised", "Attributable", "Ephemeral", "Revoked on completion"):
        assert label in text
    assert "Task credential not revoked on completion" in text  # registry titles
    assert "script" not in checker.tags
    assert "http://" not in page and "https://" not in page
    assert_no_external_resources(page, checker)
    assert "default-src 'none'" in page  # CSP: a browser fetches nothing either
    assert page.count("<svg") >= 2


def test_hostile_alert_and_metric_fields_are_escaped() -> None:
    metrics = [
        metric(T0, tasks_completed=4, tasks_succeeded=4, tasks_safe=3, actions_total=10),
        metric(T0, dim="team", value=HOSTILE, actions_total=10, actions_authorized=9),
    ]
    alerts = [
        alert(identity_id=HOSTILE, approver='"><img src=x onerror=alert(1)>'),
        alert("X-<b>99", severity="<i>sev</i>", message=HOSTILE, identity_id="a"),
        alert(identity_id="https://evil.example/x.js", alert_id="z"),
    ]
    page = page_of(data_of(metrics, alerts))
    checker = check_html(page)
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "<img" not in page
    assert "X-&lt;b&gt;99" in page
    assert "script" not in checker.tags and "img" not in checker.tags
    assert "i" in checker.tags  # the page's own <i> swatches only
    assert HOSTILE in " ".join(checker.text)  # shown as text, not markup
    assert_no_external_resources(page, checker)  # an URL in data is text, never a resource


def test_headline_numbers_are_reaggregated_from_counts() -> None:
    metrics = [
        metric(
            T0,
            tasks_completed=10,
            tasks_succeeded=9,
            tasks_safe=6,
            actions_total=100,
            actions_authorized=90,
        ),
        metric(
            T0 + MIN,
            tasks_completed=30,
            tasks_succeeded=30,
            tasks_safe=15,
            actions_total=50,
            actions_authorized=50,
        ),
        # another window size and other dimensions must not be counted twice
        metric(T0, size=3_600_000, tasks_completed=40, tasks_succeeded=39, tasks_safe=21),
        metric(T0, dim="team", value="sales", tasks_completed=10, actions_total=100),
    ]
    summary = summarise(data_of(metrics, []))
    assert summary.window_size_ms == MIN
    success, safe = summary.completion
    assert (success.numerator, success.denominator) == (39, 40)
    assert (safe.numerator, safe.denominator) == (21, 40)
    assert safe.rate == pytest.approx(0.525)  # not the mean of 0.6 and 0.5
    authorised = summary.governance[0]
    assert (authorised.numerator, authorised.denominator) == (140, 150)
    assert summary.governance[3].rate is None  # 0 / 0 is n/a, not 0 %
    assert [t.team for t in summary.teams] == ["sales"]
    assert (summary.first_ms, summary.last_ms) == (T0, T0 + 2 * MIN)
    page = page_of(data_of(metrics, []))
    assert "52.5%" in page and "21 / 40" in page and "140 / 150" in page
    assert "n/a" in page


def test_governance_rates_by_mode_in_mode_order() -> None:
    metrics = [
        metric(T0, actions_total=60, actions_authorized=50),
        metric(T0, dim="mode", value="autonomous", actions_total=40, actions_authorized=30),
        metric(T0 + MIN, dim="mode", value="autonomous", actions_total=10, actions_authorized=10),
        metric(T0, dim="mode", value="reporting", actions_total=10, actions_authorized=10),
        metric(T0, dim="mode", value="assistant", actions_total=5, actions_authorized=4),
        metric(T0, size=3_600_000, dim="mode", value="assistant", actions_total=99),
    ]
    summary = summarise(data_of(metrics, []))
    assert [m.team for m in summary.modes] == ["reporting", "assistant", "autonomous"]
    autonomous = summary.modes[2]
    assert autonomous.actions == 50  # summed over windows of the chosen size only
    assert (autonomous.rates[0].numerator, autonomous.rates[0].denominator) == (40, 50)
    page = page_of(data_of(metrics, []))
    assert "Governance rates by mode of autonomy" in page and "40 / 50" in page
    older = page_of(data_of(metrics[:1], []))
    assert "no mode windows" in older
    from pipeline.report import build
    from pipeline.report.scope import Scope, apply_scope

    scope = Scope(team="sales")
    teams_only = apply_scope(data_of(metrics, []), scope)
    page, summary = build.render_data(teams_only, generated_at_ms=T0, scope=scope.describe())
    assert summary.modes == () and "not broken down by mode within a team" in page


def test_latest_revision_of_each_window_wins() -> None:
    first = metric(T0, tasks_completed=5, tasks_succeeded=5, tasks_safe=5)
    revised = metric(T0, revision=2, tasks_completed=8, tasks_succeeded=7, tasks_safe=4)
    middle = metric(T0, revision=1, tasks_completed=6, tasks_succeeded=6, tasks_safe=6)
    kept = latest_metrics([first, revised, middle])
    assert kept == [revised]
    summary = summarise(data_of([first, revised, middle], []))
    assert summary.completion[1].numerator == 4


def test_alert_updates_count_once_and_bad_records_are_skipped() -> None:
    create = alert(alert_id="same", count=1, severity="medium")
    update = alert(alert_id="same", count=3, severity="high", activity_id=2)
    other = alert("RS-01", alert_id="b", approver="pat@example.com", identity_id=None)
    assert latest_alerts([update, create, other]) == [update, other]
    data = report_data(
        [b"\x00\x00\x00\x00\x09junk", b"not json"],
        [orjson.dumps(create), orjson.dumps(update), orjson.dumps(other), b"[]", b"{", b""],
    )
    assert (data.metrics_skipped, data.alerts_skipped) == (2, 3)
    summary = summarise(data)
    assert summary.alerts_total == 2
    assert dict(summary.alerts_by_severity) == {"high": 2}
    assert [o.name for o in summary.approvers] == ["pat@example.com"]
    assert summary.identities[0].top_detectors == (("SP-01", 1),)
    assert any("Skipped 2 undecodable" in n for n in summary.notes)
    assert parse_alert(b'{"detector": 5}') is None


def test_window_size_choice() -> None:
    assert choose_window_size([metric(T0, size=300_000), metric(T0, size=3_600_000)]) == 300_000
    assert choose_window_size([metric(T0, size=3_600_000), metric(T0)]) == MIN
    assert choose_window_size([metric(T0, dim="team", value="x")]) is None


def test_empty_topics_render_a_page_that_says_so() -> None:
    page = page_of(ReportData(metrics_topic="m", alerts_topic="a"))
    check_html(page)
    assert "No metric records were found" in page
    assert "No alerts were found" in page
    assert "No completed tasks in the metrics yet." in page


def test_chart_breaks_lines_at_windows_without_tasks() -> None:
    points = [
        Point(T0, T0 + MIN, 10, 10, 8, 0),
        Point(T0 + MIN, T0 + 2 * MIN, 0, 0, 0, 0),
        Point(T0 + 2 * MIN, T0 + 3 * MIN, 10, 9, 9, 1),
        Point(T0 + 3 * MIN, T0 + 4 * MIN, 10, 9, 5, 2),
    ]
    svg = completion_chart(points)
    assert svg.count("<polygon") == 2  # two runs: [0] and [2, 3]
    assert svg.count("<polyline") == 4
    # lowest rate 0.5, minus a margin: 0.4, and under 50 % the axis starts on a quarter
    assert rate_floor(points) == pytest.approx(0.25)
    assert rate_floor([Point(T0, T0 + MIN, 100, 99, 80, 0)]) == pytest.approx(0.7)
    assert rate_floor([Point(T0, T0 + MIN, 4, 1, 0, 0)]) == 0.0


def test_a_low_volume_window_does_not_set_the_rate_axis() -> None:
    points = [Point(T0 + i * MIN, T0 + (i + 1) * MIN, 100, 95, 80, 0) for i in range(5)]
    points.insert(0, Point(T0 - MIN, T0, 2, 1, 0, 0))  # the first minute of a run
    assert rate_floor(points) == pytest.approx(0.7)
    svg = completion_chart(points)
    assert svg.count("<path d=") == 1 and "below 70%" in svg  # marked, not hidden
    tips = re.findall(r"<title>([^<]*)</title>", svg)
    assert any("safe 0.0% (0/2)" in t for t in tips)  # the real value is in its tooltip


def test_sample_is_deterministic_and_consistent() -> None:
    a, b = make_sample(5), make_sample(5)
    assert a.metrics == b.metrics
    assert [x["alert_id"] for x in a.alerts] == [x["alert_id"] for x in b.alerts]
    summary = summarise(sample_data(seed=5))
    success, safe = summary.completion
    assert success.rate is not None and safe.rate is not None
    assert 0.05 < success.rate - safe.rate < 0.25  # a visible gap
    assert summary.alerts_total == len({x["alert_id"] for x in a.alerts})
    assert len(summary.series) == 120
    assert [m.team for m in summary.modes] == ["reporting", "assistant", "autonomous"]
    # every team's windows are in one mode's (the global ones also have late revisions)
    assert sum(m.actions for m in summary.modes) == sum(t.actions for t in summary.teams)


class FakeMessage:
    def __init__(self, partition: int, offset: int = 0, value: bytes | None = b"v", eof=False):
        self._p, self._o, self._v, self._eof = partition, offset, value, eof

    def error(self) -> Any:
        if not self._eof:
            return None
        from confluent_kafka import KafkaError

        return KafkaError(KafkaError._PARTITION_EOF)

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def key(self) -> bytes | None:
        return None

    def value(self) -> bytes | None:
        return self._v

    def headers(self) -> list[tuple[str, bytes]]:
        return [("h", b"1")]


class FakeConsumer:
    def __init__(self, batches: list[list[FakeMessage]], partitions: int = 2) -> None:
        self.batches = batches
        self.partitions = partitions
        self.closed = False
        self.assigned: list[Any] = []

    def list_topics(self, topic: str, timeout: float) -> Any:
        meta = type("T", (), {"error": None, "partitions": dict.fromkeys(range(self.partitions))})
        return type("M", (), {"topics": {topic: meta}})

    def assign(self, partitions: list[Any]) -> None:
        self.assigned = partitions

    def consume(self, n: int, timeout: float) -> list[FakeMessage]:
        return self.batches.pop(0) if self.batches else []

    def close(self) -> None:
        self.closed = True


def test_topic_reader_reads_until_every_partition_is_at_eof_and_quiet() -> None:
    ticks = iter(range(1000))
    consumer = FakeConsumer(
        [
            [FakeMessage(0, 0), FakeMessage(1, 0)],
            [FakeMessage(0, eof=True)],
            [],
            [FakeMessage(1, 1), FakeMessage(1, eof=True)],
        ]
    )
    reader = TopicReader(
        load_settings(), "t", idle_s=2, consumer=consumer, clock=lambda: float(next(ticks))
    )
    got = list(reader)
    assert [(r.partition, r.offset) for r in got] == [(0, 0), (1, 0), (1, 1)]
    assert got[0].headers == (("h", b"1"),)
    assert reader.records == 3 and not reader.truncated and consumer.closed
    assert len(consumer.assigned) == 2


def test_topic_reader_stops_at_max_seconds() -> None:
    ticks = iter(range(0, 10_000, 1))
    endless = [[FakeMessage(0, i)] for i in range(1000)]
    reader = TopicReader(
        load_settings(),
        "t",
        idle_s=2,
        max_seconds=10,
        consumer=FakeConsumer(endless, partitions=1),
        clock=lambda: float(next(ticks)),
    )
    got = list(reader)
    assert reader.truncated and 0 < len(got) < 20
