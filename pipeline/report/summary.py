"""``ReportData`` -> ``Summary``: the numbers the report shows, computed once.

Pure functions: no I/O, no clock. Rates are always re-aggregated from their
numerator and denominator counts (summing rates would be wrong), and a rate with
a zero denominator is None ("n/a"), never 0 %.

Metric records come in several window sizes and dimensions; to count nothing twice
the report uses ONE window size (1 minute when present, else the smallest) and
sums over its windows: ``global`` for the headline and the chart, ``team`` for the
team table, ``mode`` for the table by mode of autonomy.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pipeline.metrics.record import MetricRecord
from pipeline.report.collect import ReportData

PREFERRED_WINDOW_MS: Final = 60_000
SEVERITIES: Final = ("critical", "high", "medium", "low")
OTHER_SEVERITY: Final = "other"
TOP_OFFENDERS: Final = 10
TOP_DETECTORS_PER_OFFENDER: Final = 3
MAX_TEAMS: Final = 30
#: The registry's modes of autonomy, in the order the report lists them (least
#: autonomous first); a value outside them (a newer writer's) comes after.
MODE_ORDER: Final = ("reporting", "assistant", "autonomous")
#: Bounds on hostile text before it reaches the page (then it is escaped too).
MAX_ID: Final = 80
MAX_DETECTOR: Final = 16


@dataclass(frozen=True, slots=True)
class RateSpec:
    key: str
    label: str
    numerator: str
    denominator: str
    meaning: str


#: The governance rates of docs/contracts/metrics.md, in the order the report shows them.
GOVERNANCE_RATES: Final = (
    RateSpec(
        "authorized_action_rate",
        "Authorised",
        "actions_authorized",
        "actions_total",
        "actions with an allow decision recorded at request time",
    ),
    RateSpec(
        "attributable_action_rate",
        "Attributable",
        "actions_attributable",
        "actions_total",
        "actions by an identity known to the registry",
    ),
    RateSpec(
        "ephemeral_credential_rate",
        "Ephemeral",
        "actions_ephemeral",
        "actions_with_credential",
        "credentialed actions under a JIT or short-lived secret",
    ),
    RateSpec(
        "revoked_on_completion_rate",
        "Revoked on completion",
        "task_credentials_revoked",
        "task_credentials_completed",
        "task credentials revoked within the grace period after the task",
    ),
    RateSpec(
        "meaningful_review_rate",
        "Meaningful review",
        "approvals_meaningful",
        "approvals_decided",
        "approvals with no rubber-stamp (RS) finding",
    ),
)
COMPLETION_RATES: Final = (
    RateSpec(
        "successful_completion_rate",
        "Successful completion",
        "tasks_succeeded",
        "tasks_completed",
        "tasks that finished with outcome success",
    ),
    RateSpec(
        "safe_completion_rate",
        "Safe completion",
        "tasks_safe",
        "tasks_completed",
        "tasks that succeeded with no finding on the task",
    ),
)


@dataclass(frozen=True, slots=True)
class Ratio:
    numerator: int
    denominator: int

    @property
    def rate(self) -> float | None:
        return self.numerator / self.denominator if self.denominator > 0 else None


@dataclass(frozen=True, slots=True)
class Point:
    """One window of the completion chart."""

    window_start: int
    window_end: int
    tasks: int
    succeeded: int
    safe: int
    alerts: int

    @property
    def success_rate(self) -> float | None:
        return Ratio(self.succeeded, self.tasks).rate

    @property
    def safe_rate(self) -> float | None:
        return Ratio(self.safe, self.tasks).rate


@dataclass(frozen=True, slots=True)
class TeamRow:
    team: str
    actions: int
    tasks: int
    rates: tuple[Ratio, ...]  # in GOVERNANCE_RATES order


@dataclass(frozen=True, slots=True)
class DetectorRow:
    detector: str
    title: str
    by_severity: tuple[tuple[str, int], ...]  # (severity, count), SEVERITIES order
    total: int


@dataclass(frozen=True, slots=True)
class Offender:
    name: str
    alerts: int
    worst_severity: str
    top_detectors: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Summary:
    window_size_ms: int | None
    window_sizes: tuple[int, ...]
    first_ms: int | None
    last_ms: int | None
    totals: Mapping[str, int]
    completion: tuple[Ratio, ...]  # COMPLETION_RATES order
    governance: tuple[Ratio, ...]  # GOVERNANCE_RATES order
    series: tuple[Point, ...]
    teams: tuple[TeamRow, ...]
    teams_hidden: int
    alerts_total: int
    alerts_by_severity: tuple[tuple[str, int], ...]
    detectors: tuple[DetectorRow, ...]
    identities: tuple[Offender, ...]
    approvers: tuple[Offender, ...]
    metric_windows: int
    notes: tuple[str, ...] = field(default=())
    #: windows left out of the chart for having almost no tasks (they count in totals)
    sparse_windows: int = 0
    sparse_tasks: int = 0
    sparse_below: int = 0
    #: time covered by windows with activity, and in how many stretches (gaps cut out)
    data_ms: int = 0
    stretches: int = 0
    #: what the report is limited to (``--team``, ``--since``, ``--until``), or ""
    scope: str = ""
    #: governance rates per mode of autonomy (``mode`` windows), MODE_ORDER first
    modes: tuple[TeamRow, ...] = ()


#: A stretch of more than this many empty windows is cut out of the time axis (and of
#: the time the header says the data covers).
MAX_GAP_WINDOWS: Final = 10

#: A window with fewer completed tasks than this share of the busiest window's is
#: "near-empty": the tail of a run (tasks in flight finishing) would otherwise fill
#: the chart with rates of one or two tasks.
SPARSE_SHARE: Final = 0.05


def chart_series(points: Sequence[Point]) -> tuple[tuple[Point, ...], int, int, int]:
    """(points drawn, windows left out, their tasks, the threshold) for the chart."""
    busy = [p for p in points if p.tasks > 0]
    if not busy:
        return tuple(points), 0, 0, 0
    below = math.ceil(SPARSE_SHARE * max(p.tasks for p in busy))
    kept = tuple(p for p in points if p.tasks >= below)
    left = [p for p in busy if p.tasks < below]
    return kept, len(left), sum(p.tasks for p in left), below


def covered(records: Sequence[MetricRecord], max_gap_windows: int) -> tuple[int, int]:
    """(ms covered by windows with activity, stretches separated by long empty gaps)."""
    active = sorted(
        (r for r in records if r.actions_total > 0 or r.tasks_completed > 0),
        key=lambda r: r.window_start,
    )
    if not active:
        return 0, 0
    size = min(r.window_size_ms for r in active) or 1
    stretches = 1
    for prev, cur in itertools.pairwise(active):
        if cur.window_start - prev.window_end > max_gap_windows * size:
            stretches += 1
    return sum(r.window_size_ms for r in active), stretches


def choose_window_size(records: Iterable[MetricRecord]) -> int | None:
    """1 minute when there are 1-minute global windows, else the smallest global size."""
    sizes = {r.window_size_ms for r in records if r.dimension == "global"}
    if not sizes:
        return None
    return PREFERRED_WINDOW_MS if PREFERRED_WINDOW_MS in sizes else min(sizes)


def _sum(records: Iterable[MetricRecord], names: Iterable[str]) -> dict[str, int]:
    wanted = tuple(names)
    totals = dict.fromkeys(wanted, 0)
    for r in records:
        for name in wanted:
            totals[name] += int(getattr(r, name))
    return totals


def _ratios(totals: Mapping[str, int], specs: Sequence[RateSpec]) -> tuple[Ratio, ...]:
    return tuple(Ratio(totals[s.numerator], totals[s.denominator]) for s in specs)


_RATE_COUNTS: Final = [
    name for s in (*COMPLETION_RATES, *GOVERNANCE_RATES) for name in (s.numerator, s.denominator)
]
_COUNT_FIELDS: Final = tuple(dict.fromkeys([*_RATE_COUNTS, "alerts_total", "late_events"]))


def severity_of(alert: Mapping[str, Any]) -> str:
    value = alert.get("severity")
    return value if isinstance(value, str) and value in SEVERITIES else OTHER_SEVERITY


def _text(value: Any, limit: int) -> str | None:
    """A bounded string field of an alert, or None (hostile input: type-checked here)."""
    if isinstance(value, str) and value:
        return value[:limit]
    return None


def _severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


def _alert_time(alert: Mapping[str, Any]) -> int | None:
    value = alert.get("time")
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def detector_rows(
    alerts: Sequence[Mapping[str, Any]], titles: Mapping[str, str]
) -> tuple[DetectorRow, ...]:
    """Alerts per detector and severity, most alerts first."""
    counts: dict[str, Counter[str]] = {}
    alert_titles: dict[str, str] = {}
    for alert in alerts:
        detector = _text(alert.get("detector"), MAX_DETECTOR) or "?"
        counts.setdefault(detector, Counter())[severity_of(alert)] += 1
        title = _text(alert.get("message"), 120)
        if title and detector not in alert_titles:
            alert_titles[detector] = title
    rows = [
        DetectorRow(
            detector,
            # the registry's title when the detector is known; the alert's own otherwise
            titles.get(detector) or alert_titles.get(detector) or "",
            tuple((s, c[s]) for s in (*SEVERITIES, OTHER_SEVERITY) if c[s]),
            sum(c.values()),
        )
        for detector, c in counts.items()
    ]
    return tuple(sorted(rows, key=lambda r: (-r.total, r.detector)))


def offenders(alerts: Sequence[Mapping[str, Any]], field_name: str) -> tuple[Offender, ...]:
    """Subjects named in ``field_name`` (identity_id, approver) by alert count."""
    by_name: dict[str, Counter[str]] = {}
    worst: dict[str, str] = {}
    for alert in alerts:
        name = _text(alert.get(field_name), MAX_ID)
        if name is None:
            continue
        detector = _text(alert.get("detector"), MAX_DETECTOR) or "?"
        by_name.setdefault(name, Counter())[detector] += 1
        severity = severity_of(alert)
        if name not in worst or _severity_rank(severity) < _severity_rank(worst[name]):
            worst[name] = severity
    rows = [
        Offender(
            name,
            sum(c.values()),
            worst[name],
            tuple(sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_DETECTORS_PER_OFFENDER]),
        )
        for name, c in by_name.items()
    ]
    rows.sort(key=lambda o: (-o.alerts, _severity_rank(o.worst_severity), o.name))
    return tuple(rows[:TOP_OFFENDERS])


def completion_series(records: Iterable[MetricRecord], size: int) -> tuple[Point, ...]:
    points = [
        Point(
            r.window_start,
            r.window_end,
            r.tasks_completed,
            r.tasks_succeeded,
            r.tasks_safe,
            r.alerts_total,
        )
        for r in records
        if r.dimension == "global" and r.window_size_ms == size
    ]
    return tuple(sorted(points, key=lambda p: p.window_start))


def team_rows(records: Iterable[MetricRecord], size: int, dimension: str = "team") -> list[TeamRow]:
    """Per-team (or other ``dimension`` value) sums over the windows of ``size``,
    busiest first."""
    grouped: dict[str, list[MetricRecord]] = {}
    for r in records:
        if r.dimension == dimension and r.window_size_ms == size:
            grouped.setdefault(r.dimension_value[:MAX_ID], []).append(r)
    rows = []
    for team, team_records in grouped.items():
        totals = _sum(team_records, _COUNT_FIELDS)
        rows.append(
            TeamRow(
                team,
                totals["actions_total"],
                totals["tasks_completed"],
                _ratios(totals, GOVERNANCE_RATES),
            )
        )
    rows.sort(key=lambda t: (-t.actions, -t.tasks, t.team))
    return rows


def mode_rows(records: Iterable[MetricRecord], size: int) -> list[TeamRow]:
    """Sums per mode of autonomy, in ``MODE_ORDER`` (``TeamRow.team`` holds the mode)."""
    rows = team_rows(records, size, "mode")
    rank = {m: i for i, m in enumerate(MODE_ORDER)}
    return sorted(rows, key=lambda r: (rank.get(r.team, len(rank)), r.team))


def summarise(
    data: ReportData, titles: Mapping[str, str] | None = None, scope: str = ""
) -> Summary:
    """Everything the page shows. ``titles``: detector id -> title (the registry's);
    ``scope``: what the data was limited to, for the header."""
    titles = titles or {}
    notes: list[str] = []
    size = choose_window_size(data.metrics)
    sizes = tuple(sorted({r.window_size_ms for r in data.metrics}))
    if size is None:
        global_records: list[MetricRecord] = []
        notes.append(
            f"No metric windows in this scope ({scope})."
            if scope
            else "No metric records were found: is the worker publishing to the metrics topic?"
        )
    else:
        global_records = [
            r for r in data.metrics if r.dimension == "global" and r.window_size_ms == size
        ]
    totals = _sum(global_records, _COUNT_FIELDS)
    all_points = completion_series(global_records, size) if size else ()
    series, sparse, sparse_tasks, sparse_below = chart_series(all_points)
    teams = team_rows(data.metrics, size) if size else []

    alerts = data.alerts
    severity_counts = Counter(severity_of(a) for a in alerts)
    alerts_by_severity = tuple(
        (s, severity_counts[s]) for s in (*SEVERITIES, OTHER_SEVERITY) if severity_counts[s]
    )
    if not alerts:
        notes.append("No alerts were found on the alerts topic.")

    # the range covered is the metric windows' with activity (empty windows closing
    # after a clock jump say nothing); alert times (anyone can write the alerts topic)
    # only stand in when there are no metrics
    times = [t for t in (_alert_time(a) for a in alerts) if t is not None]
    active = [r for r in global_records if r.actions_total > 0 or r.tasks_completed > 0]
    starts = [r.window_start for r in active or global_records] or times
    ends = [r.window_end for r in active or global_records] or times
    data_ms, stretches = covered(global_records, MAX_GAP_WINDOWS)
    notes.extend(data.notes)
    if data.metrics_skipped or data.alerts_skipped:
        notes.append(
            f"Skipped {data.metrics_skipped} undecodable metric record(s) and "
            f"{data.alerts_skipped} record(s) on the alerts topic that are not alerts."
        )
    if data.truncated:
        notes.append("Reading stopped at --max-seconds: the report may miss the newest records.")
    return Summary(
        window_size_ms=size,
        window_sizes=sizes,
        first_ms=min(starts) if starts else None,
        last_ms=max(ends) if ends else None,
        totals=totals,
        completion=_ratios(totals, COMPLETION_RATES),
        governance=_ratios(totals, GOVERNANCE_RATES),
        series=series,
        teams=tuple(teams[:MAX_TEAMS]),
        teams_hidden=max(0, len(teams) - MAX_TEAMS),
        modes=tuple(mode_rows(data.metrics, size)[:MAX_TEAMS]) if size else (),
        alerts_total=len(alerts),
        alerts_by_severity=alerts_by_severity,
        detectors=detector_rows(alerts, titles),
        identities=offenders(alerts, "identity_id"),
        approvers=offenders(alerts, "approver"),
        metric_windows=len(global_records),
        notes=tuple(notes),
        sparse_windows=sparse,
        sparse_tasks=sparse_tasks,
        sparse_below=sparse_below,
        data_ms=data_ms,
        stretches=stretches,
        scope=scope,
    )


def registry_titles() -> dict[str, str]:
    """Detector id -> title from the detector registry (trusted text)."""
    from pipeline.detectors.registry import all_detectors

    return {d.spec.id: d.spec.title for d in all_detectors()}
