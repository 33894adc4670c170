"""Report scope (--since/--until/--team), near-empty windows and the header's period."""

from __future__ import annotations

import pytest

from pipeline.metrics.record import MetricRecord
from pipeline.report.collect import ReportData
from pipeline.report.render import render_report
from pipeline.report.scope import Scope, apply_scope, parse_scope, parse_time
from pipeline.report.summary import Point, chart_series, summarise

NOW = 1_796_459_568_000  # 2026-12-05T08:32:48Z
MIN = 60_000
DAY = 86_400_000


def test_times_iso_epoch_and_relative() -> None:
    assert parse_time("2026-12-05T08:32:48Z", NOW) == NOW
    assert parse_time("2026-12-05T08:32:48", NOW) == NOW  # naive means UTC
    assert parse_time("2026-12-05", NOW) == NOW - (8 * 3600 + 32 * 60 + 48) * 1000
    assert parse_time(str(NOW), NOW) == NOW
    assert parse_time("2h", NOW) == NOW - 2 * 3_600_000
    assert parse_time("30m", NOW) == NOW - 30 * MIN and parse_time("7d", NOW) == NOW - 7 * DAY
    with pytest.raises(ValueError, match="is not a time"):
        parse_time("yesterday", NOW)
    with pytest.raises(ValueError, match="--since must be before --until"):
        parse_scope("1h", "2h", None, NOW)


def window(start: int, tasks: int, dimension: str = "global", value: str = "all") -> MetricRecord:
    return MetricRecord(
        start,
        start + MIN,
        MIN,
        dimension,
        value,
        actions_total=tasks * 3,
        tasks_completed=tasks,
        tasks_succeeded=tasks,
        tasks_safe=tasks,
    )


def test_near_empty_windows_are_left_out_of_the_chart() -> None:
    points = [Point(i * MIN, (i + 1) * MIN, n, n, n, 0) for i, n in enumerate([800, 700, 3, 2])]
    kept, left, tasks, below = chart_series(points)
    assert [p.tasks for p in kept] == [800, 700] and (left, tasks, below) == (2, 5, 40)
    steady = [Point(i * MIN, (i + 1) * MIN, 50, 50, 50, 0) for i in range(5)]
    assert chart_series(steady)[0] == tuple(steady)


def test_header_period_counts_the_data_not_the_jump() -> None:
    base = NOW - NOW % MIN
    records = [window(base + i * MIN, 100) for i in range(25)]
    records += [window(base + 7 * DAY + i * MIN, 1) for i in range(2)]
    records.append(window(base + 7 * DAY + 5 * MIN, 0))  # an empty window closing late
    summary = summarise(ReportData(metrics=records))
    assert summary.stretches == 2 and summary.data_ms == 27 * MIN
    assert summary.last_ms == base + 7 * DAY + 2 * MIN  # not the empty window's end
    page = render_report(summary, generated_at_ms=NOW)
    assert "27 min of data in 2 stretches" in page
    assert "2 near-empty windows (fewer than 5 completed tasks each, 2 in all)" in page


def test_scope_by_time_and_team() -> None:
    base = NOW - NOW % MIN
    records = [window(base + i * MIN, 10) for i in range(10)]
    records += [window(base + i * MIN, 4, "team", "payments") for i in range(10)]
    records += [window(base + i * MIN, 6, "team", "sales") for i in range(10)]
    alerts = [
        {"alert_id": "a", "time": base + 2 * MIN, "identity_id": "pay-bot"},
        {"alert_id": "b", "time": base + 3 * MIN, "identity_id": "sales-bot"},
        {"alert_id": "c", "time": base + 9 * MIN, "identity_id": "pay-bot"},
    ]
    data = ReportData(metrics=records, alerts=alerts)
    scope = Scope(base + 2 * MIN, base + 5 * MIN, "payments")
    scoped = apply_scope(data, scope, lambda ids: {"pay-bot": "payments", "sales-bot": "sales"})
    summary = summarise(scoped, scope=scope.describe())
    assert summary.metric_windows == 3 and summary.totals["tasks_completed"] == 12
    assert [row.team for row in summary.teams] == ["payments"]
    assert summary.alerts_total == 1
    assert summary.scope.startswith("team payments · since ")
    assert apply_scope(data, Scope()) is data
