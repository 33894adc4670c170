"""``Summary`` -> one self-contained HTML page (inline CSS and SVG, no scripts, no URLs;
the only links are relative ones to the evidence pages written beside it).

Pure: the generation time is passed in. Alert fields and metric dimension values
are hostile input (anyone who can write to the topics writes them), so every one
goes through ``esc`` (``html.escape`` with quotes). A Content-Security-Policy meta
tag (``default-src 'none'``) makes a browser refuse any fetch the page might
still try.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from pipeline.report.charts import (
    GAP_COLOUR,
    SAFE_COLOUR,
    SEVERITY_COLOURS,
    SUCCESS_COLOUR,
    VOLUME_COLOUR,
    completion_chart,
    esc,
    legend,
    pct,
    rate_floor,
    severity_bar,
    severity_legend,
    utc,
)
from pipeline.report.summary import (
    GOVERNANCE_RATES,
    OTHER_SEVERITY,
    SEVERITIES,
    DetectorRow,
    Offender,
    Ratio,
    Summary,
)

CSP: Final = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'"

CSS: Final = (
    """
:root { --ink:#1d2433; --muted:#667085; --line:#e6e9ef; --soft:#f6f7f9; --accent:#2f5fd0; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; background: #fbfbfc; color: var(--ink);
  font: 15px/1.5 -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, "Helvetica Neue",
  "Liberation Sans", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 36px 32px 48px; }
header.top { display: flex; justify-content: space-between; align-items: flex-end;
  border-bottom: 1px solid var(--line); padding-bottom: 18px; margin-bottom: 24px; gap: 24px; }
h1 { font-size: 26px; line-height: 1.2; margin: 0 0 4px; letter-spacing: -0.01em; }
h2 { font-size: 18px; margin: 0 0 4px; letter-spacing: -0.005em; }
.sub { color: var(--muted); margin: 0; }
.meta { color: var(--muted); font-size: 13px; text-align: right; white-space: nowrap; }
.meta b { color: var(--ink); font-weight: 600; }
section { background: #fff; border: 1px solid var(--line); border-radius: 10px;
  padding: 20px 22px; margin: 0 0 20px; }
section > p.lede { color: var(--muted); margin: 0 0 14px; font-size: 14px; }
.notes { background: #fff8eb; border: 1px solid #f3d9a4; border-radius: 8px;
  padding: 10px 14px; margin: 0 0 20px; font-size: 14px; }
.notes p { margin: 2px 0; }
.cards { display: grid; grid-template-columns: repeat(6, 1fr); gap: 12px; margin: 0 0 20px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 14px 16px; }
.card .k { color: var(--muted); font-size: 12px; text-transform: uppercase;
  letter-spacing: .04em; }
.card .v { font-size: 28px; font-weight: 650; line-height: 1.2; margin-top: 4px;
  font-variant-numeric: tabular-nums; }
.card .d { color: var(--muted); font-size: 12.5px; font-variant-numeric: tabular-nums; }
.card.success .v { color: """
    + SUCCESS_COLOUR
    + """; }
.card.safe .v { color: """
    + SAFE_COLOUR
    + """; }
.card.gap { border-color: #f1c9a8; background: #fffaf5; }
.card.gap .v { color: #b4561b; }
.chips { display: flex; flex-wrap: wrap; gap: 4px; margin-top: 6px; }
.chip { font-size: 11.5px; padding: 1px 7px; border-radius: 999px; color: #fff;
  font-variant-numeric: tabular-nums; }
.chip.low, .chip.other { color: #1d2433; }
.legend { display: flex; gap: 18px; flex-wrap: wrap; font-size: 13px; color: var(--muted);
  margin: 6px 0 8px; }
.legend .sw { display: inline-block; width: 12px; height: 12px; border-radius: 3px;
  margin-right: 6px; vertical-align: -1px; }
.legend .sw.line { height: 3px; border-radius: 2px; vertical-align: 3px; width: 18px; }
svg.chart, svg.bars { display: block; width: 100%; height: auto; }
table { width: 100%; border-collapse: collapse; font-size: 13.5px; }
th { text-align: left; font-weight: 600; color: var(--muted); font-size: 12px;
  text-transform: uppercase; letter-spacing: .03em; border-bottom: 1px solid var(--line);
  padding: 8px 10px; white-space: nowrap; }
td { border-bottom: 1px solid var(--line); padding: 8px 10px; vertical-align: middle; }
tr:last-child td { border-bottom: 0; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
td.bad-v { color: #b0322a; } td.good-v { color: #1f7a55; }
tr.all td { background: var(--soft); font-weight: 600; }
.id { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
  font-size: 12.5px; overflow-wrap: anywhere; }
.rate { min-width: 120px; }
.rate .bar { height: 6px; background: #eef0f4; border-radius: 3px; overflow: hidden;
  margin-bottom: 4px; }
.rate .bar i { display: block; height: 100%; border-radius: 3px; }
.rate .pc { font-weight: 600; font-variant-numeric: tabular-nums; }
.rate .nd { color: var(--muted); font-size: 12px; font-variant-numeric: tabular-nums;
  margin-left: 4px; }
.rate.na .pc { color: var(--muted); font-weight: 400; }
.good { background: #3f9c78; } .warn { background: #e5a13b; } .bad { background: #d0453b; }
.sb { width: 240px; } svg.sbar { display: block; }
table.detectors td { padding: 6px 10px; }
.two { display: grid; grid-template-columns: 1fr 1fr; gap: 24px; align-items: start; }
.det { color: var(--muted); font-size: 12.5px; }
.det b { font-family: ui-monospace, Menlo, Consolas, monospace; color: var(--ink);
  font-weight: 600; }
.sev { display: inline-block; width: 8px; height: 8px; border-radius: 50%; margin-right: 6px; }
.howto p { margin: 0 0 8px; font-size: 14px; }
.howto p:last-child { margin: 0; }
footer { color: var(--muted); font-size: 12.5px; margin-top: 8px; }
.empty { color: var(--muted); font-style: italic; margin: 8px 0; }
"""
)


def _int(n: int) -> str:
    return f"{n:,}"


def _duration(ms: int) -> str:
    minutes = ms // 60_000
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} d {hours % 24} h"


def _window(ms: int | None) -> str:
    if ms is None:
        return "\u2013"
    if ms % 3_600_000 == 0:
        return f"{ms // 3_600_000}-hour"
    if ms % 60_000 == 0:
        return f"{ms // 60_000}-minute"
    return f"{ms / 1000:g}-second"


def _tone(rate: float | None) -> str:
    if rate is None:
        return ""
    if rate >= 0.95:
        return "good"
    return "warn" if rate >= 0.8 else "bad"


def rate_cell(ratio: Ratio) -> str:
    """A small bar, the rate, and numerator/denominator."""
    rate = ratio.rate
    nd = f'<span class="nd">{_int(ratio.numerator)} / {_int(ratio.denominator)}</span>'
    if rate is None:
        return f'<td class="rate na"><div class="bar"></div><span class="pc">n/a</span>{nd}</td>'
    width = max(0.0, min(rate, 1.0)) * 100
    return (
        f'<td class="rate"><div class="bar"><i class="{_tone(rate)}" style="width:{width:.1f}%">'
        f'</i></div><span class="pc">{pct(rate)}</span>{nd}</td>'
    )


def _chips(counts: Sequence[tuple[str, int]]) -> str:
    return (
        '<div class="chips">'
        + "".join(
            f'<span class="chip {esc(s)}" style="background:'
            f'{SEVERITY_COLOURS.get(s, SEVERITY_COLOURS[OTHER_SEVERITY])}">'
            f"{esc(s)} {_int(n)}</span>"
            for s, n in counts
        )
        + "</div>"
    )


def _header(summary: Summary, generated_at_ms: int) -> str:
    if summary.first_ms is not None and summary.last_ms is not None:
        span = max(summary.last_ms - summary.first_ms, 0)
        same_day = utc(summary.first_ms, "%Y-%m-%d") == utc(summary.last_ms, "%Y-%m-%d")
        end_fmt = "%H:%M" if same_day else "%Y-%m-%d %H:%M"
        if summary.stretches > 1:  # the time between stretches has no data, nor the chart
            length = (
                f"{_duration(summary.data_ms)} of data in {summary.stretches} stretches; "
                f"the {_duration(max(span - summary.data_ms, 0))} between them had none"
            )
        else:
            length = _duration(span)
        covered = (
            f"<b>{esc(utc(summary.first_ms, '%Y-%m-%d %H:%M'))} → "
            f"{esc(utc(summary.last_ms, end_fmt))} UTC</b> ({length})"
        )
    else:
        covered = "<b>no data</b>"
    if summary.scope:
        covered += f"<br>Limited to <b>{esc(summary.scope)}</b>"
    return (
        '<header class="top"><div><h1>Agent governance report</h1>'
        '<p class="sub">Successful completion is not safe completion: what the automation '
        "finished, next to whether it was authorised, attributable and reversible.</p></div>"
        f'<div class="meta">Covers {covered}<br>'
        f"{_window(summary.window_size_ms)} windows · generated "
        f"{esc(utc(generated_at_ms, '%Y-%m-%d %H:%M'))} UTC</div></header>"
    )


def _notes(summary: Summary) -> str:
    if not summary.notes:
        return ""
    return '<div class="notes">' + "".join(f"<p>{esc(n)}</p>" for n in summary.notes) + "</div>"


def _cards(summary: Summary) -> str:
    t = summary.totals
    success, safe = summary.completion
    gap = None if success.rate is None or safe.rate is None else (success.rate - safe.rate) * 100
    gap_text = "n/a" if gap is None else f"{gap:.1f} pts"
    unsafe = success.numerator - safe.numerator
    cards = [
        ("", "Actions", _int(t.get("actions_total", 0)), f"{_int(summary.metric_windows)} windows"),
        (
            "",
            "Tasks completed",
            _int(success.denominator),
            f"{_int(t.get('approvals_decided', 0))} approvals decided",
        ),
        (
            "success",
            "Successful completion",
            pct(success.rate),
            f"{_int(success.numerator)} / {_int(success.denominator)} tasks",
        ),
        (
            "safe",
            "Safe completion",
            pct(safe.rate),
            f"{_int(safe.numerator)} / {_int(safe.denominator)} tasks",
        ),
        ("gap", "The gap", gap_text, f"{_int(unsafe)} successful tasks were not safe"),
    ]
    html = ['<div class="cards">']
    for cls, label, value, detail in cards:
        html.append(
            f'<div class="card {cls}"><div class="k">{label}</div><div class="v">{value}</div>'
            f'<div class="d">{detail}</div></div>'
        )
    html.append(
        f'<div class="card"><div class="k">Alerts</div><div class="v">'
        f"{_int(summary.alerts_total)}</div>{_chips(summary.alerts_by_severity)}</div>"
    )
    html.append("</div>")
    return "".join(html)


def _completion(summary: Summary) -> str:
    success, safe = summary.completion
    floor = rate_floor(summary.series)
    clipped = any(
        min(p.success_rate or 0.0, p.safe_rate or 0.0) < floor for p in summary.series if p.tasks
    )
    axis = f" The rate axis starts at {floor * 100:.0f}%." if floor > 0 else ""
    if clipped:
        axis += " A triangle on it marks a window with few tasks whose rate is below it."
    if summary.sparse_windows:
        axis += (
            f" {_int(summary.sparse_windows)} near-empty window"
            f"{'s' if summary.sparse_windows != 1 else ''} (fewer than "
            f"{_int(summary.sparse_below)} completed tasks each, {_int(summary.sparse_tasks)} "
            "in all) are not drawn; they count in every total."
        )
    return (
        "<section><h2>Successful vs safe completion over time</h2>"
        f'<p class="lede">Per {_window(summary.window_size_ms)} window, all platforms. '
        "The shaded band is the share of completed tasks that succeeded but carried a "
        "governance finding: work that got done without being authorised, attributable or "
        f"reversible. Overall: {pct(success.rate)} successful, {pct(safe.rate)} safe.{axis}</p>"
        + legend(
            [
                (SUCCESS_COLOUR, "successful completion rate"),
                (SAFE_COLOUR, "safe completion rate"),
                (GAP_COLOUR + "55", "the gap"),
                (VOLUME_COLOUR, "tasks completed per window (lower strip)"),
            ]
        )
        + completion_chart(summary.series)
        + "</section>"
    )


def _teams(summary: Summary) -> str:
    head = "".join(f"<th>{esc(spec.label)}</th>" for spec in GOVERNANCE_RATES)
    rows = [
        '<tr class="all"><td>All teams</td>'
        f'<td class="n">{_int(summary.totals.get("actions_total", 0))}</td>'
        + "".join(rate_cell(r) for r in summary.governance)
        + "</tr>"
    ]
    for team in summary.teams:
        rows.append(
            f'<tr><td class="id">{esc(team.team)}</td><td class="n">{_int(team.actions)}</td>'
            + "".join(rate_cell(r) for r in team.rates)
            + "</tr>"
        )
    hidden = (
        f'<p class="empty">{summary.teams_hidden} smaller team(s) not shown.</p>'
        if summary.teams_hidden
        else ""
    )
    no_teams = (
        ""
        if summary.teams
        else '<p class="empty">No team windows: identities carry no team in the registry.</p>'
    )
    meanings = "; ".join(f"<b>{esc(s.label)}</b>: {esc(s.meaning)}" for s in GOVERNANCE_RATES)
    return (
        "<section><h2>Governance rates by team</h2>"
        f'<p class="lede">Each rate with its numerator / denominator, summed over every '
        f"window. {meanings}. Teams come from the identity registry.</p>"
        f'<table><thead><tr><th>Team</th><th class="n">Actions</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>{no_teams}{hidden}</section>"
    )


def _modes(summary: Summary) -> str:
    """Governance rates by the acting identity's mode of autonomy (``mode`` windows)."""
    head = "".join(f"<th>{esc(spec.label)}</th>" for spec in GOVERNANCE_RATES)
    rows = [
        f'<tr><td class="id">{esc(row.team)}</td><td class="n">{_int(row.actions)}</td>'
        + "".join(rate_cell(r) for r in row.rates)
        + "</tr>"
        for row in summary.modes
    ]
    if not rows:
        why = (
            "not broken down by mode within a team"
            if summary.scope.startswith("team ")
            else "no mode windows (metrics from a worker without modes)"
        )
        return (
            "<section><h2>Governance rates by mode of autonomy</h2>"
            f'<p class="empty">By mode: {esc(why)}.</p></section>'
        )
    return (
        "<section><h2>Governance rates by mode of autonomy</h2>"
        '<p class="lede">The same rates per mode of the acting identity in the registry: '
        "reporting, assistant, autonomous (an identity without a mode counts as "
        "autonomous; identities the registry does not know are in no mode).</p>"
        f'<table><thead><tr><th>Mode</th><th class="n">Actions</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _detector_table(rows: Sequence[DetectorRow]) -> str:
    present = {s for row in rows for s, _ in row.by_severity}
    shown = [s for s in (*SEVERITIES, OTHER_SEVERITY) if s in present]
    head = "".join(f'<th class="n">{s}</th>' for s in shown)
    most = max((row.total for row in rows), default=1)
    body = []
    for row in rows:
        counts = dict(row.by_severity)
        cells = "".join(f'<td class="n">{counts.get(s, 0) or ""}</td>' for s in shown)
        body.append(
            f'<tr><td class="id">{esc(row.detector)}</td><td>{esc(row.title)}</td>'
            f'<td class="sb">{severity_bar(row, most)}</td>{cells}'
            f'<td class="n"><b>{_int(row.total)}</b></td></tr>'
        )
    return (
        f'<table class="detectors"><thead><tr><th>Detector</th><th>Title</th><th>Alerts</th>'
        f'{head}<th class="n">Total</th></tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


def _alerts(summary: Summary, by_task: bool = False) -> str:
    if not summary.detectors:
        return (
            '<section><h2>Alerts by detector and severity</h2><p class="empty">'
            "No alerts.</p></section>"
        )
    return (
        "<section><h2>Alerts by detector and severity</h2>"
        '<p class="lede">Distinct findings (one per alert id: an OCSF Update of the same '
        "finding is not a new alert), most frequent first."
        + (
            " The tasks they name are listed below, under <b>Tasks with findings</b>, each "
            "with its evidence page."
            if by_task
            else ""
        )
        + "</p>"
        + severity_legend()
        + _detector_table(summary.detectors)
        + "</section>"
    )


def _offender_table(title: str, who: str, rows: Sequence[Offender]) -> str:
    if not rows:
        return f'<div><h2>{title}</h2><p class="empty">No alerts name {who}.</p></div>'
    body = []
    for o in rows:
        colour = SEVERITY_COLOURS.get(o.worst_severity, SEVERITY_COLOURS[OTHER_SEVERITY])
        detectors = ", ".join(f"<b>{esc(d)}</b> \u00d7{n}" for d, n in o.top_detectors)
        body.append(
            f'<tr><td class="id"><i class="sev" style="background:{colour}" '
            f'title="worst severity: {esc(o.worst_severity)}"></i>{esc(o.name)}</td>'
            f'<td class="n">{_int(o.alerts)}</td><td class="det">{detectors}</td></tr>'
        )
    return (
        f"<div><h2>{title}</h2>"
        f'<table><thead><tr><th>{who.capitalize()}</th><th class="n">Alerts</th>'
        f"<th>Top detectors</th></tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _offenders(summary: Summary) -> str:
    return (
        '<section><div class="two">'
        + _offender_table("Top offending identities", "identity", summary.identities)
        + _offender_table("Top offending approvers", "approver", summary.approvers)
        + '</div><p class="lede" style="margin:12px 0 0">By number of distinct alerts naming '
        "them; the dot is the worst severity among those alerts.</p></section>"
    )


HOW_TO_READ: Final = (
    '<section class="howto"><h2>How to read this</h2>'
    "<p><b>Successful completion</b> counts tasks that finished with outcome success; "
    "<b>safe completion</b> counts those that also drew no governance finding (no "
    "unauthorised, unattributable, long-lived-secret or rubber-stamped step). A dashboard "
    "that shows only the first number reports productivity as if it were control; the "
    "distance between the two lines is the work that was done without being governed.</p>"
    "<p>Every rate is shown with its numerator / denominator and is re-computed from the "
    "summed counts, never averaged; <b>n/a</b> means there was nothing to divide "
    "(0 / 0), not 0 %. Windows are event-time windows; a window revised by late events "
    "is counted once, at its latest revision.</p>"
    "<p>Alerts are OCSF Detection Findings from the alerts topic, counted once per "
    "alert id. Start with the top offending identities and approvers: a single identity "
    "behind many SP findings usually means one long-lived secret to rotate; an approver "
    "behind RS findings is a review process to fix, not a person to blame.</p></section>"
)


def render_report(
    summary: Summary,
    *,
    generated_at_ms: int,
    metrics_topic: str = "",
    alerts_topic: str = "",
    records_read: tuple[int, int] = (0, 0),
    tasks_html: str = "",
) -> str:
    """The whole page. ``records_read``: (metric records, alert records) read;
    ``tasks_html``: the "Tasks with findings" section (``dossiers.tasks_section``)."""
    sources = (
        f'Sources: <span class="id">{esc(metrics_topic)}</span> ({_int(records_read[0])} '
        f"records, {_int(len(summary.series))} global windows used) and "
        f'<span class="id">{esc(alerts_topic)}</span> ({_int(records_read[1])} records, '
        f"{_int(summary.alerts_total)} distinct alerts)."
    )
    body = "".join(
        (
            _header(summary, generated_at_ms),
            _notes(summary),
            _cards(summary),
            _completion(summary),
            _teams(summary),
            _modes(summary),
            _alerts(summary, by_task=bool(tasks_html)),
            tasks_html,
            _offenders(summary),
            HOW_TO_READ,
            f"<footer>{sources} Generated by govpipe report.</footer>",
        )
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        "<title>govpipe · agent governance report</title>"
        f"<style>{CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )
