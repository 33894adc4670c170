"""``build_report``: read the topics, summarise, render, write the file (the I/O shell)."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.evidence.source import DossierSource
from pipeline.report.collect import DEFAULT_IDLE_S, ReportData, TopicReader, collect
from pipeline.report.dossiers import (
    EVIDENCE_DIR,
    MAX_EVIDENCE_PAGES,
    TaskFindings,
    evidence_pages,
    task_findings,
    tasks_named,
    tasks_section,
)
from pipeline.report.render import render_report
from pipeline.report.scope import Scope, apply_scope
from pipeline.report.summary import Summary, registry_titles, summarise
from pipeline.settings import Settings


@dataclass(frozen=True, slots=True)
class BuiltReport:
    path: Path
    data: ReportData
    summary: Summary
    tasks: TaskFindings = field(default_factory=TaskFindings)
    #: evidence pages written, next to the report under ``evidence/``
    pages: tuple[Path, ...] = ()


def render_data(
    data: ReportData,
    *,
    generated_at_ms: int,
    scope: str = "",
    tasks: TaskFindings | None = None,
) -> tuple[str, Summary]:
    """HTML for already-collected data (also used with synthetic data). ``tasks``: the
    "Tasks with findings" section (left out when None)."""
    summary = summarise(data, registry_titles(), scope)
    page = render_report(
        summary,
        generated_at_ms=generated_at_ms,
        metrics_topic=data.metrics_topic,
        alerts_topic=data.alerts_topic,
        records_read=(data.metric_records_read, data.alert_records_read),
        tasks_html=tasks_section(tasks) if tasks is not None else "",
    )
    return page, summary


def read_dossiers(
    settings: Settings, *, idle_s: float, max_seconds: float | None
) -> tuple[DossierSource | None, str | None]:
    """The evidence topic read once (latest revision per task), or None and why not."""
    from pipeline.errors import GovpipeError, InfraError
    from pipeline.evidence.codec import EvidenceCodec
    from pipeline.evidence.source import TopicScan

    topic = settings.topic_evidence
    reader = TopicReader(settings, topic, idle_s=idle_s, max_seconds=max_seconds)
    scan = TopicScan(reader, EvidenceCodec(topic=topic, registry_url=settings.schema_registry_url))
    try:
        scan.get("")  # reads the topic to the end
    except (GovpipeError, InfraError) as exc:
        return None, f"No evidence pages: the evidence topic {topic} could not be read ({exc})."
    if scan.records == 0:
        return None, (
            f"No evidence pages: the evidence topic {topic} is empty (evidence off? "
            "GOVPIPE_EVIDENCE=false, or no task has completed yet)."
        )
    note = None
    if reader.truncated:
        note = f"The evidence topic {topic} was not read to the end (--max-seconds)."
    if scan.skipped:
        note = (note + " " if note else "") + f"{scan.skipped} evidence records did not decode."
    return scan, note


def registry_teams(
    settings: Settings, data: ReportData
) -> Callable[[list[str]], Mapping[str, str | None]]:
    """identity ids -> team from the registry in Redis (alerts carry no team); when
    Redis cannot be read, no alert matches a team and ``data`` gets a note saying so."""

    def team_of(ids: list[str]) -> Mapping[str, str | None]:
        import redis

        from pipeline.enrichment.keys import KeySpace

        keys = KeySpace(settings.redis_key_prefix)
        try:
            client = redis.Redis.from_url(
                settings.redis_url.get_secret_value(), socket_timeout=5, socket_connect_timeout=3
            )
            try:
                pipe = client.pipeline(transaction=False)
                for identity in ids:
                    pipe.hget(keys.identity(identity), "team")
                teams = pipe.execute()
            finally:
                client.close()
        except (redis.RedisError, OSError) as exc:
            data.notes.append(
                f"Alerts are not filtered by team: the identity registry at "
                f"{settings.redis_url_redacted} could not be read ({type(exc).__name__})."
            )
            return {}
        return {
            i: (t.decode("utf-8", "replace") if isinstance(t, bytes) else t)
            for i, t in zip(ids, teams, strict=True)
        }

    return team_of


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
    scope: Scope | None = None,
    max_pages: int = MAX_EVIDENCE_PAGES,
) -> BuiltReport:
    """Read the metrics and alerts topics of ``settings`` and write the HTML report
    (limited to ``scope``: a time range, a team), and beside it ``evidence/<task>.html``
    for each task an alert in scope names (at most ``max_pages``, newest first), from
    the evidence topic."""
    path = Path(out_path)
    data = collect(settings, idle_s=idle_s, max_seconds=max_seconds)
    scope = scope or Scope()
    if not scope.everything:
        data = apply_scope(data, scope, registry_teams(settings, data))
    now = generated_at_ms if generated_at_ms is not None else int(time.time() * 1000)
    source: DossierSource | None = None
    note: str | None = None
    if max_pages > 0 and tasks_named(data.alerts):
        source, note = read_dossiers(settings, idle_s=idle_s, max_seconds=max_seconds)
    tasks = task_findings(
        data.alerts, source, limit=max_pages, note=note, topic=settings.topic_evidence
    )
    page, summary = render_data(data, generated_at_ms=now, scope=scope.describe(), tasks=tasks)
    written = []
    if source is not None:
        pages = evidence_pages(tasks, source, generated_at_ms=now, report_name=path.name)
        for name, html in pages.items():
            target = path.parent / EVIDENCE_DIR / name
            write_atomically(target, html)
            written.append(target)
    write_atomically(path, page)
    return BuiltReport(path, data, summary, tasks, tuple(written))
