"""``build_report``: read the topics, summarise, render, write the file (the I/O shell)."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.report.collect import DEFAULT_IDLE_S, ReportData, collect
from pipeline.report.render import render_report
from pipeline.report.summary import Summary, registry_titles, summarise
from pipeline.settings import Settings


@dataclass(frozen=True, slots=True)
class BuiltReport:
    path: Path
    data: ReportData
    summary: Summary


def render_data(data: ReportData, *, generated_at_ms: int) -> tuple[str, Summary]:
    """HTML for already-collected data (also used with synthetic data)."""
    summary = summarise(data, registry_titles())
    page = render_report(
        summary,
        generated_at_ms=generated_at_ms,
        metrics_topic=data.metrics_topic,
        alerts_topic=data.alerts_topic,
        records_read=(data.metric_records_read, data.alert_records_read),
    )
    return page, summary


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` next to ``path`` and rename it into place (no half-written page)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    path.chmod(0o644)


def build_report(
    settings: Settings,
    out_path: Path | str,
    *,
    idle_s: float = DEFAULT_IDLE_S,
    max_seconds: float | None = None,
    generated_at_ms: int | None = None,
) -> BuiltReport:
    """Read the metrics and alerts topics of ``settings`` and write the HTML report."""
    path = Path(out_path)
    data = collect(settings, idle_s=idle_s, max_seconds=max_seconds)
    now = generated_at_ms if generated_at_ms is not None else int(time.time() * 1000)
    page, summary = render_data(data, generated_at_ms=now)
    write_atomically(path, page)
    return BuiltReport(path, data, summary)
