"""`govpipe report --out report.html`: a self-contained HTML report of metrics and alerts.

Reads ``governance.metrics.v1`` and ``governance.alerts.v1`` from the oldest record
to the end (assign, until quiet; nothing committed, no group joined) and writes one
HTML page with inline CSS and SVG: nothing on it is fetched from anywhere. When alerts
in scope name tasks, it also reads ``governance.evidence.v1`` and writes one evidence
page per task (at most ``--max-pages``) under ``evidence/`` beside the report.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pipeline.settings import get_settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "report", help="an HTML report: successful vs safe completion, rates by team, alerts"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("report.html"), metavar="FILE", help="the HTML file"
    )
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        default=True,
        help="read both topics from the oldest record (the default; a report needs history)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        metavar="N",
        help="stop reading each topic after N seconds (the report says it may be incomplete)",
    )
    parser.add_argument(
        "--idle",
        type=float,
        default=2.0,
        metavar="S",
        help="quiet seconds that mean a topic has been read to the end",
    )
    parser.add_argument(
        "--since",
        metavar="TIME",
        help="only metric windows and alerts from TIME: ISO-8601 (2026-05-01T10:00Z), "
        "epoch ms, or a span before now (30m, 2h, 7d)",
    )
    parser.add_argument("--until", metavar="TIME", help="only up to TIME (same forms)")
    parser.add_argument(
        "--team",
        metavar="TEAM",
        help="only this team: its metric windows, and alerts whose identity is in it "
        "(the registry in Redis says which)",
    )
    parser.add_argument(
        "--max-pages",
        type=int,
        default=None,
        metavar="N",
        help="evidence pages written at most, newest finding first (default 200; 0: none)",
    )
    parser.add_argument(
        "--screenshot",
        type=Path,
        default=None,
        metavar="PNG",
        help="also render the page to a PNG with headless Chromium",
    )
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from pipeline.commands._kafka import require_broker
    from pipeline.errors import ConfigError, GovpipeError
    from pipeline.report import build_report
    from pipeline.report.dossiers import EVIDENCE_DIR, MAX_EVIDENCE_PAGES
    from pipeline.report.scope import parse_scope

    if args.max_seconds is not None and args.max_seconds <= 0:
        raise GovpipeError("--max-seconds must be positive")
    if args.max_pages is not None and args.max_pages < 0:
        raise GovpipeError("--max-pages must not be negative")
    try:
        scope = parse_scope(args.since, args.until, args.team, int(time.time() * 1000))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    settings = get_settings()
    require_broker(settings)
    built = build_report(
        settings,
        args.out,
        idle_s=args.idle,
        max_seconds=args.max_seconds,
        scope=scope,
        max_pages=MAX_EVIDENCE_PAGES if args.max_pages is None else args.max_pages,
    )
    s, data = built.summary, built.data
    success, safe = s.completion
    print(
        f"wrote {built.path}: {data.metric_records_read} metric records "
        f"({s.metric_windows} global windows), {s.alerts_total} distinct alerts "
        f"from {data.alert_records_read} records" + (f"; limited to {s.scope}" if s.scope else "")
    )
    if success.denominator:
        print(
            f"successful completion {success.numerator}/{success.denominator}, "
            f"safe completion {safe.numerator}/{safe.denominator}"
        )
    tasks = built.tasks
    if tasks.rows or tasks.left_out:
        print(
            f"{len(built.pages)} evidence pages in {built.path.parent / EVIDENCE_DIR} for "
            f"{len(tasks.rows) + tasks.left_out} tasks with findings"
            + (f" ({tasks.left_out} over the bound of {tasks.limit})" if tasks.left_out else "")
        )
    for note in [*s.notes, *([tasks.note] if tasks.note else [])]:
        print(f"note: {note}")
    if args.screenshot is not None:
        from pipeline.report.screenshot import ScreenshotError, screenshot

        try:
            png = screenshot(built.path, args.screenshot)
        except ScreenshotError as exc:
            raise GovpipeError(f"screenshot: {exc}") from None
        print(f"wrote {png}")
    return 0
