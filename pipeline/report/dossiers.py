"""The report's evidence pages: one per task an alert in scope names, and the table
"Tasks with findings" that links to them.

Pure apart from nothing: the dossiers come through a ``DossierSource`` (the evidence
topic read once by ``build.py``; a ``MemorySource`` in tests). Tasks are taken from
the alerts the report covers (after ``--since/--until/--team``), newest finding first,
at most ``MAX_EVIDENCE_PAGES`` of them; the rest are counted and said.

File names come from task ids, which are hostile input: ``evidence_file_name`` keeps
a short prefix of ``[A-Za-z0-9_-]`` and adds a hash of the whole id, so no id can
name a path outside ``evidence/``, a hidden file, or another task's page.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

from pipeline.evidence.source import DossierSource, resolve_chain
from pipeline.evidence.views import VERDICTS
from pipeline.report.charts import esc
from pipeline.report.summary import SEVERITIES, severity_of

#: Pages written per report at most (newest finding first); the rest are counted.
MAX_EVIDENCE_PAGES: Final = 200
#: The folder, next to the report, that holds the pages.
EVIDENCE_DIR: Final = "evidence"
_PREFIX_CHARS: Final = 40
#: detectors named per row at most (the rest counted)
MAX_DETECTORS_SHOWN: Final = 6
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_-]+")
DASH: Final = "\u2013"


def evidence_file_name(task_id: str) -> str:
    """``<sanitised prefix>-<16 hex of sha256(task id)>.html``: only ``[A-Za-z0-9_-.]``,
    never a separator or a leading dot, distinct for distinct ids."""
    digest = hashlib.sha256(task_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    prefix = _UNSAFE.sub("_", task_id)[:_PREFIX_CHARS].strip("_") or "task"
    return f"{prefix}-{digest}.html"


@dataclass(frozen=True, slots=True)
class TaskRow:
    """One task named by alerts in scope."""

    task_id: str
    alerts: int
    detectors: tuple[tuple[str, int], ...]  # (detector, alerts), most first
    worst_severity: str
    last_ms: int | None
    platform: str | None = None
    team: str | None = None
    #: (label, verdict) from the dossier; empty when there is none
    verdicts: tuple[tuple[str, bool | None], ...] = ()
    #: the page's file name under ``evidence/``; None when no dossier was found
    page: str | None = None


@dataclass(frozen=True, slots=True)
class TaskFindings:
    rows: tuple[TaskRow, ...] = ()
    #: tasks named by alerts in scope beyond the bound (no row, no page)
    left_out: int = 0
    #: why there are no pages (evidence topic missing, empty, …)
    note: str | None = None
    topic: str = ""
    #: the bound the rows were cut at
    limit: int = MAX_EVIDENCE_PAGES


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _time(alert: Mapping[str, Any]) -> int | None:
    value = alert.get("time")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def tasks_named(alerts: Iterable[Mapping[str, Any]]) -> list[tuple[str, list[Mapping[str, Any]]]]:
    """(task id, its alerts) for every task an alert names, newest finding first."""
    by_task: dict[str, list[Mapping[str, Any]]] = {}
    for alert in alerts:
        task = _text(alert.get("task_id"))
        if task is not None:
            by_task.setdefault(task, []).append(alert)

    def newest(item: tuple[str, list[Mapping[str, Any]]]) -> tuple[int, str]:
        return (-max((_time(a) or 0 for a in item[1]), default=0), item[0])

    return sorted(by_task.items(), key=newest)


def task_findings(
    alerts: Iterable[Mapping[str, Any]],
    source: DossierSource | None,
    *,
    limit: int = MAX_EVIDENCE_PAGES,
    note: str | None = None,
    topic: str = "",
) -> TaskFindings:
    """The rows of "Tasks with findings" (at most ``limit``), each with its dossier's
    team, platform and verdicts when ``source`` has one."""
    named = tasks_named(alerts)
    rows = []
    for task, its in named[:limit]:
        detectors = Counter(str(a.get("detector")) for a in its)
        severities = {severity_of(a) for a in its}
        worst = next((s for s in SEVERITIES if s in severities), "other")
        times = [t for t in (_time(a) for a in its) if t is not None]
        dossier = source.get(task) if source is not None else None
        platform = next((p for p in (_text(a.get("platform")) for a in its) if p), None)
        team = None
        verdicts: tuple[tuple[str, bool | None], ...] = ()
        if dossier is not None:
            platform = _text(dossier.get("platform")) or platform
            team = _text((dossier.get("initiator") or {}).get("team"))
            got = dossier.get("verdicts") or {}
            verdicts = tuple((label, got.get(key)) for key, label in VERDICTS)
        rows.append(
            TaskRow(
                task_id=task,
                alerts=len(its),
                detectors=tuple(sorted(detectors.items(), key=lambda kv: (-kv[1], kv[0]))),
                worst_severity=worst,
                last_ms=max(times) if times else None,
                platform=platform,
                team=team,
                verdicts=verdicts,
                page=evidence_file_name(task) if dossier is not None else None,
            )
        )
    return TaskFindings(tuple(rows), max(0, len(named) - limit), note, topic, limit)


def evidence_pages(
    findings: TaskFindings,
    source: DossierSource,
    *,
    generated_at_ms: int,
    report_name: str,
) -> dict[str, str]:
    """file name -> HTML for every row that has a dossier (each links back)."""
    from pipeline.report.evidence import render_evidence_page

    pages: dict[str, str] = {}
    back = "../" + quote(report_name)
    for row in findings.rows:
        dossier = source.get(row.task_id) if row.page is not None else None
        if dossier is None or row.page is None:
            continue
        trace = {"dossier": dossier, "chain": resolve_chain(source, dossier)}
        pages[row.page] = render_evidence_page(
            trace,
            generated_at_ms=generated_at_ms,
            sources=[findings.topic] if findings.topic else (),
            back_href=back,
        )
    return pages


def _verdict_cell(verdicts: Sequence[tuple[str, bool | None]]) -> str:
    if not verdicts:
        return '<td class="det">no dossier</td>'
    failed = [label for label, v in verdicts if v is False]
    if not failed:
        return '<td class="good-v">\u2714 all green</td>'
    return '<td class="bad-v">\u2718 ' + esc(", ".join(failed)) + "</td>"


def tasks_section(findings: TaskFindings) -> str:
    """The report's "Tasks with findings" section (every value escaped)."""
    head = "<section><h2>Tasks with findings</h2>"
    note = f'<p class="lede">{esc(findings.note)}</p>' if findings.note else ""
    more = (
        f'<p class="lede" style="margin:12px 0 0">{findings.left_out} more tasks named by '
        f"alerts in scope are not listed and have no page here (at most {findings.limit} "
        "are, newest finding first): use <code>govpipe trace task ID</code>.</p>"
        if findings.left_out
        else ""
    )
    if not findings.rows:
        empty = "" if findings.left_out else '<p class="empty">No alert in scope names a task.</p>'
        return head + note + empty + more + "</section>"
    body = []
    for row in findings.rows:
        detectors = ", ".join(
            f"<b>{esc(d)}</b>" + (f" \u00d7{n}" if n > 1 else "")
            for d, n in row.detectors[:MAX_DETECTORS_SHOWN]
        )
        if len(row.detectors) > MAX_DETECTORS_SHOWN:
            detectors += f" (+{len(row.detectors) - MAX_DETECTORS_SHOWN} more)"
        link = (
            f'<a href="{esc(EVIDENCE_DIR + "/" + quote(row.page))}">evidence</a>'
            if row.page is not None
            else '<span class="det">\u2013</span>'
        )
        body.append(
            f'<tr><td class="id">{esc(row.task_id)}</td>'
            f"<td>{esc(row.platform or DASH)} / {esc(row.team or DASH)}</td>"
            f'<td class="det">{detectors}</td><td>{esc(row.worst_severity)}</td>'
            f'<td class="n">{row.alerts}</td>{_verdict_cell(row.verdicts)}<td>{link}</td></tr>'
        )
    return (
        head + '<p class="lede">Each task named by an alert in scope, newest finding first, with '
        "its own self-contained evidence page (the dossier from "
        f'<span class="id">{esc(findings.topic or "governance.evidence.v1")}</span>).</p>'
        + note
        + "<table><thead><tr><th>Task</th><th>Platform / team</th><th>Detectors</th>"
        '<th>Worst</th><th class="n">Alerts</th><th>Verdicts</th><th>Page</th></tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>{more}</section>"
    )
