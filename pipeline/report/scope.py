"""``--since``, ``--until`` and ``--team``: which part of the topics a report covers.

Times are ISO-8601 (``2026-05-01T10:00Z``, a date alone is midnight UTC), epoch
milliseconds, or relative to now (``90s``, ``30m``, ``2h``, ``7d``). A metric window
is in range when it starts at or after ``since`` and ends at or before ``until``; an
alert when its ``time`` is in ``[since, until)``.

With ``--team`` the report is that team's: its team windows stand in for the global
ones (headline, chart, rates), and an alert belongs to it when its identity is in
that team in the registry (``team_of``; alerts do not carry a team).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from pipeline.metrics.record import MetricRecord
from pipeline.report.collect import ReportData

_RELATIVE: Final = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNIT_MS: Final = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_time(value: str, now_ms: int) -> int:
    """ISO-8601, epoch ms or a relative ``2h`` (before ``now_ms``) -> epoch ms."""
    text = value.strip()
    match = _RELATIVE.match(text)
    if match:
        return now_ms - int(float(match.group(1)) * _UNIT_MS[match.group(2)])
    if text.isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{value!r} is not a time: use ISO-8601 (2026-05-01T10:00Z), epoch ms, "
            "or a span before now (30m, 2h, 7d)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Scope:
    since_ms: int | None = None
    until_ms: int | None = None
    team: str | None = None

    @property
    def everything(self) -> bool:
        return self.since_ms is None and self.until_ms is None and self.team is None

    def describe(self) -> str:
        """``team payments · since … · until …`` (empty when everything is shown)."""
        parts = []
        if self.team is not None:
            parts.append(f"team {self.team}")
        if self.since_ms is not None:
            parts.append(f"since {iso(self.since_ms)}")
        if self.until_ms is not None:
            parts.append(f"until {iso(self.until_ms)}")
        return " · ".join(parts)

    def window_in(self, record: MetricRecord) -> bool:
        if self.since_ms is not None and record.window_start < self.since_ms:
            return False
        return self.until_ms is None or record.window_end <= self.until_ms

    def time_in(self, ms: Any) -> bool:
        if isinstance(ms, bool) or not isinstance(ms, int | float):
            return self.since_ms is None and self.until_ms is None
        if self.since_ms is not None and ms < self.since_ms:
            return False
        return self.until_ms is None or ms < self.until_ms


def parse_scope(since: str | None, until: str | None, team: str | None, now_ms: int) -> Scope:
    scope = Scope(
        parse_time(since, now_ms) if since else None,
        parse_time(until, now_ms) if until else None,
        team or None,
    )
    lo, hi = scope.since_ms, scope.until_ms
    if lo is not None and hi is not None and lo >= hi:
        raise ValueError("--since must be before --until")
    return scope


def apply_scope(
    data: ReportData,
    scope: Scope,
    team_of: Callable[[list[str]], Mapping[str, str | None]] | None = None,
) -> ReportData:
    """The part of ``data`` the scope covers (``data`` itself when it covers all)."""
    if scope.everything:
        return data
    metrics = [r for r in data.metrics if scope.window_in(r)]
    if scope.team is not None:
        own = [r for r in metrics if r.dimension == "team" and r.dimension_value == scope.team]
        # the team's windows stand in for the global ones: headline, chart and rates
        as_global = [dataclasses.replace(r, dimension="global", dimension_value="all") for r in own]
        metrics = [*as_global, *own]
    alerts = [a for a in data.alerts if scope.time_in(a.get("time"))]
    if scope.team is not None:
        ids = sorted({str(a["identity_id"]) for a in alerts if a.get("identity_id")})
        teams = team_of(ids) if team_of is not None and ids else {}
        alerts = [
            a
            for a in alerts
            if a.get("team") == scope.team or teams.get(str(a.get("identity_id"))) == scope.team
        ]
    return dataclasses.replace(data, metrics=metrics, alerts=alerts)
