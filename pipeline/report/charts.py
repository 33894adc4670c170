"""Inline SVG charts drawn here (no chart library, nothing fetched).

Pure functions returning SVG markup. Every text that could come from data goes
through ``esc``; numbers are formatted here. Inline SVG in HTML needs no
``xmlns`` (the HTML parser puts ``<svg>`` in the SVG namespace), so the page holds
no URL at all.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from pipeline.report.summary import (
    MAX_GAP_WINDOWS,
    OTHER_SEVERITY,
    SEVERITIES,
    DetectorRow,
    Point,
)

SUCCESS_COLOUR: Final = "#2f5fd0"
SAFE_COLOUR: Final = "#0f8a64"
GAP_COLOUR: Final = "#e8833a"
VOLUME_COLOUR: Final = "#d5dae2"
GRID_COLOUR: Final = "#e9ecf1"
AXIS_TEXT: Final = "#667085"
SEVERITY_COLOURS: Final = {
    "critical": "#7a1f2b",
    "high": "#d0453b",
    "medium": "#eba13a",
    "low": "#8fb3e8",
    OTHER_SEVERITY: "#b4bac4",
}
MINUTE_MS: Final = 60_000
_TICK_STEPS_MS: Final = tuple(
    m * MINUTE_MS for m in (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080)
)


def esc(value: object) -> str:
    """HTML/SVG-escaped text (quotes too: safe inside attributes)."""
    return html.escape(str(value), quote=True)


def utc(ms: int | None, fmt: str = "%H:%M") -> str:
    if ms is None:
        return "\u2013"
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime(fmt)
    except (OverflowError, OSError, ValueError):
        return "?"


def pct(rate: float | None, digits: int = 1) -> str:
    return "n/a" if rate is None else f"{rate * 100:.{digits}f}%"


def _f(value: float) -> str:
    """Compact coordinates."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _tick_step(span_ms: int, max_ticks: int = 8) -> int:
    for step in _TICK_STEPS_MS:
        if span_ms / step <= max_ticks:
            return step
    return _TICK_STEPS_MS[-1]


def _segments(points: Sequence[Point]) -> list[list[Point]]:
    """Runs of consecutive windows that have completed tasks (gaps break the lines)."""
    runs: list[list[Point]] = []
    current: list[Point] = []
    for p in points:
        if p.tasks <= 0:
            if current:
                runs.append(current)
            current = []
            continue
        if current and p.window_start != current[-1].window_end:
            runs.append(current)
            current = []
        current.append(p)
    if current:
        runs.append(current)
    return runs


def rate_floor(points: Sequence[Point]) -> float:
    """Where the rate axis starts: a round tenth under the lowest rate (0 at worst).

    Per-window rates of a healthy system sit near the top; an axis from 0 would
    squeeze the gap into a few pixels. The axis start is printed on the chart.
    Windows with very few tasks (under a quarter of the median, e.g. the first
    minute of a run) do not set the scale: a rate below the axis is drawn on it,
    marked with a triangle, and its tooltip gives the real value.
    """
    busy = [p for p in points if p.tasks > 0]
    if not busy:
        return 0.0
    volumes = sorted(p.tasks for p in busy)
    enough = max(1.0, volumes[len(volumes) // 2] / 4)
    rates = [
        r for p in busy if p.tasks >= enough for r in (p.success_rate, p.safe_rate) if r is not None
    ]
    floor = max(0.0, math.floor((min(rates) - 0.03) * 10) / 10)
    # wide ranges get quarter ticks: start on a quarter so the ticks land on round numbers
    return math.floor(floor * 4) / 4 if floor < 0.5 else floor


BREAK_PX: Final = 30
MIN_CLUSTER_PX: Final = 24


@dataclass(frozen=True, slots=True)
class Span:
    """One stretch of the time axis: [t0, t1] drawn at [px0, px1]."""

    t0: int
    t1: int
    px0: float
    px1: float

    def x(self, t: float) -> float:
        return self.px0 + (t - self.t0) / max(self.t1 - self.t0, 1) * (self.px1 - self.px0)


def time_spans(points: Sequence[Point], x0: float, x1: float) -> list[Span]:
    """A broken time axis: runs of windows with tasks, long empty stretches cut out.

    Replays, backfills and simulators jump in event time (the simulator skips a week
    for SP-03); a linear axis would draw weeks of nothing and squash the data into
    slivers. Each run gets width in proportion to its duration (at least
    ``MIN_CLUSTER_PX``), with a ``BREAK_PX`` break between runs.
    """
    busy = [p for p in points if p.tasks > 0]
    if not busy:
        return []
    size = min(p.window_end - p.window_start for p in busy) or 1
    runs: list[list[Point]] = [[busy[0]]]
    for p in busy[1:]:
        if p.window_start - runs[-1][-1].window_end > MAX_GAP_WINDOWS * size:
            runs.append([p])
        else:
            runs[-1].append(p)
    bounds = [(r[0].window_start, max(q.window_end for q in r)) for r in runs]
    room = (x1 - x0) - BREAK_PX * (len(runs) - 1)
    total = sum(t1 - t0 for t0, t1 in bounds) or 1
    weights = [max((t1 - t0) / total, MIN_CLUSTER_PX / max(room, 1)) for t0, t1 in bounds]
    scale = room / sum(weights)
    spans, px = [], float(x0)
    for (t0, t1), w in zip(bounds, weights, strict=True):
        spans.append(Span(t0, t1, px, px + w * scale))
        px += w * scale + BREAK_PX
    return spans


def _gap_text(ms: int) -> str:
    hours = ms / 3_600_000
    if hours >= 48:
        return f"+{hours / 24:.0f} d"
    if hours >= 1:
        return f"+{hours:.0f} h"
    return f"+{ms // 60_000} min"


def completion_chart(points: Sequence[Point], *, width: int = 1120) -> str:
    """Successful vs safe completion rate per window, the gap between them shaded;
    tasks per window as bars in a strip underneath (same time axis, broken where
    nothing happened for a long stretch)."""
    left, right, top = 46, 14, 14
    plot_h, strip_gap, strip_h, axis_h = 280, 24, 46, 26
    x0, x1 = left, width - right
    y0, y1 = top, top + plot_h
    s0, s1 = y1 + strip_gap, y1 + strip_gap + strip_h
    height = s1 + axis_h
    label = "Successful and safe completion rate per window"
    points = [p for p in points if p.tasks > 0]
    spans = time_spans(points, x0, x1)
    if not points or not spans:
        return (
            f'<svg class="chart" viewBox="0 0 {width} 120" role="img" aria-label="{label}">'
            f'<text x="{width // 2}" y="64" text-anchor="middle" fill="{AXIS_TEXT}" '
            'font-size="14">No completed tasks in the metrics yet.</text></svg>'
        )
    floor = rate_floor(points)
    multi_day = utc(spans[0].t0, "%Y%m%d") != utc(spans[-1].t1, "%Y%m%d")

    def span_of(t: float) -> Span:
        for span in spans:
            if t <= span.t1:
                return span
        return spans[-1]

    def x(t: float) -> float:
        return span_of(t).x(t)

    def y(rate: float) -> float:
        return y1 - (max(rate, floor) - floor) / (1 - floor) * (y1 - y0)

    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{label}">']
    # grid and rate axis
    step = 0.05 if 1 - floor <= 0.2 else 0.1 if 1 - floor <= 0.5 else 0.25
    ticks = [floor + i * step for i in range(round((1 - floor) / step) + 1)]
    for rate in ticks:
        yy = _f(y(rate))
        parts.append(
            f'<text x="{x0 - 8}" y="{yy}" dy="4" text-anchor="end" fill="{AXIS_TEXT}" '
            f'font-size="11">{round(rate * 100)}%</text>'
        )
        for span in spans:
            parts.append(
                f'<line x1="{_f(span.px0)}" x2="{_f(span.px1)}" y1="{yy}" y2="{yy}" '
                f'stroke="{GRID_COLOUR}" stroke-width="1"/>'
            )
    # the gap, then the two lines
    for run in _segments(points):
        mids = [(p.window_start + p.window_end) / 2 for p in run]
        top_line = [(x(m), y(p.success_rate or 0.0)) for m, p in zip(mids, run, strict=True)]
        low_line = [(x(m), y(p.safe_rate or 0.0)) for m, p in zip(mids, run, strict=True)]
        if len(run) == 1:  # one window alone: widen it so it shows
            half = max((x(run[0].window_end) - x(run[0].window_start)) / 2, 1.5)
            (cx, ty), (_, ly) = top_line[0], low_line[0]
            top_line = [(cx - half, ty), (cx + half, ty)]
            low_line = [(cx - half, ly), (cx + half, ly)]
        polygon = " ".join(f"{_f(a)},{_f(b)}" for a, b in [*top_line, *reversed(low_line)])
        parts.append(f'<polygon points="{polygon}" fill="{GAP_COLOUR}" fill-opacity="0.22"/>')
        for line, colour in ((top_line, SUCCESS_COLOUR), (low_line, SAFE_COLOUR)):
            path = " ".join(f"{_f(a)},{_f(b)}" for a, b in line)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.8" '
                'stroke-linejoin="round" stroke-linecap="round"/>'
            )
    # rates under the axis start (low-volume windows only): a triangle on the axis
    for p in points:
        if min(p.success_rate or 0.0, p.safe_rate or 0.0) < floor:
            cx = x((p.window_start + p.window_end) / 2)
            parts.append(
                f'<path d="M{_f(cx - 4)},{y1 - 7} h8 l-4,7 z" fill="{SAFE_COLOUR}">'
                f"<title>below {round(floor * 100)}%: see the window's numbers</title></path>"
            )
    # tasks per window, in a strip under the rates
    most = max(p.tasks for p in points)
    parts.append(
        f'<text x="{x0 - 8}" y="{s0 + 10}" text-anchor="end" fill="{AXIS_TEXT}" '
        f'font-size="11">{most}</text>'
        f'<text x="{x0 - 8}" y="{s1}" text-anchor="end" fill="{AXIS_TEXT}" font-size="11">0</text>'
    )
    for p in points:
        bx, bw = x(p.window_start), max(x(p.window_end) - x(p.window_start) - 1, 0.6)
        bh = strip_h * p.tasks / most
        parts.append(
            f'<rect x="{_f(bx)}" y="{_f(s1 - bh)}" width="{_f(bw)}" height="{_f(bh)}" '
            f'fill="{VOLUME_COLOUR}"/>'
        )
    # axes, breaks and time ticks, span by span
    for i, span in enumerate(spans):
        for base in (y1, s1):
            parts.append(
                f'<line x1="{_f(span.px0)}" x2="{_f(span.px1)}" y1="{base}" y2="{base}" '
                'stroke="#c5cad3" stroke-width="1"/>'
            )
        if i:
            mid = (spans[i - 1].px1 + span.px0) / 2
            skipped = span.t0 - spans[i - 1].t1
            parts.append(
                f'<text x="{_f(mid)}" y="{(y0 + y1) // 2}" text-anchor="middle" '
                f'fill="{AXIS_TEXT}" font-size="10" transform="rotate(-90 {_f(mid)} '
                f'{(y0 + y1) // 2})">{esc(_gap_text(skipped))} with no tasks</text>'
            )
            for base in (y1, s1):
                parts.append(
                    f'<path d="M{_f(mid - 5)},{base + 4} l4,-8 M{_f(mid + 1)},{base + 4} l4,-8" '
                    f'stroke="{AXIS_TEXT}" stroke-width="1" fill="none"/>'
                )
        span_ms = max(span.t1 - span.t0, 1)
        max_ticks = max(1, int((span.px1 - span.px0) // 110))
        tick_step = _tick_step(span_ms, max_ticks)
        tick = -(-span.t0 // tick_step) * tick_step
        first = True
        while tick <= span.t1:
            xx = _f(span.x(tick))
            fmt = "%m-%d %H:%M" if multi_day and first else "%H:%M"
            parts.append(
                f'<line x1="{xx}" x2="{xx}" y1="{s1}" y2="{s1 + 4}" stroke="{AXIS_TEXT}"/>'
                f'<text x="{xx}" y="{s1 + 18}" text-anchor="middle" fill="{AXIS_TEXT}" '
                f'font-size="11">{esc(utc(tick, fmt))}</text>'
            )
            tick += tick_step
            first = False
    # hover targets with the numbers of each window
    for p in points:
        bx, bw = x(p.window_start), max(x(p.window_end) - x(p.window_start), 1.0)
        tip = (
            f"{utc(p.window_start, '%Y-%m-%d %H:%M')}\u2013{utc(p.window_end)} UTC · "
            f"tasks {p.tasks} · successful {pct(p.success_rate)} ({p.succeeded}/{p.tasks}) · "
            f"safe {pct(p.safe_rate)} ({p.safe}/{p.tasks}) · alerts {p.alerts}"
        )
        parts.append(
            f'<rect x="{_f(bx)}" y="{y0}" width="{_f(bw)}" height="{s1 - y0}" '
            f'fill="transparent"><title>{esc(tip)}</title></rect>'
        )
    parts.append("</svg>")
    return "".join(parts)


def severity_bar(row: DetectorRow, most: int, *, width: int = 220, height: int = 12) -> str:
    """One detector's alerts as a bar stacked by severity, scaled to ``most``."""
    scale = width / max(most, 1)
    xx = 0.0
    rects = []
    for severity, count in row.by_severity:
        bw = count * scale
        colour = SEVERITY_COLOURS.get(severity, SEVERITY_COLOURS[OTHER_SEVERITY])
        rects.append(
            f'<rect x="{_f(xx)}" y="0" width="{_f(bw)}" height="{height}" fill="{colour}">'
            f"<title>{esc(severity)}: {count}</title></rect>"
        )
        xx += bw
    return (
        f'<svg class="sbar" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{esc(row.detector)}: {row.total} alerts">{"".join(rects)}</svg>'
    )


def legend(items: Sequence[tuple[str, str]], *, swatch: str = "box") -> str:
    """An HTML legend: (colour, label) pairs."""
    return (
        '<div class="legend">'
        + "".join(
            f'<span><i class="sw {swatch}" style="background:{colour}"></i>{esc(text)}</span>'
            for colour, text in items
        )
        + "</div>"
    )


def severity_legend() -> str:
    return legend([(SEVERITY_COLOURS[s], s) for s in SEVERITIES])


__all__ = [
    "GAP_COLOUR",
    "SAFE_COLOUR",
    "SEVERITIES",
    "SEVERITY_COLOURS",
    "SUCCESS_COLOUR",
    "VOLUME_COLOUR",
    "completion_chart",
    "esc",
    "legend",
    "pct",
    "rate_floor",
    "severity_bar",
    "severity_legend",
    "time_spans",
    "utc",
]
