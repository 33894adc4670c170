"""`govpipe trace task|alert|identity|approval`: the evidence behind one task, readable.

A task is looked up by key at a running stage-2 worker first (``GOVPIPE_TRACE_URL``,
default this host's ``GOVPIPE_WEB_HOST:GOVPIPE_WEB_PORT``; ``--worker URL``): the worker
that owns the task answers from its state (``pipeline/evidence/query.py``), one HTTP
request whatever the topic's size. When no worker answers, or the owner no longer holds
the task, and for searches (alert, identity, approval), the dossiers come from the
compacted evidence topic (latest revision per task), read once from the oldest record
to the end with ``assign`` (no group, nothing committed; progress on stderr when the
read takes more than a second). Which source answered goes to stderr: what is printed
on stdout is the same either way.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_IDLE_S = 2.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "trace",
        help="the evidence behind a task, an alert, an identity's tasks or an approval",
    )
    what = parser.add_subparsers(dest="trace_what", metavar="WHAT", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--json", dest="as_json", action="store_true", help="JSON for tools")
        sub.add_argument(
            "--topic",
            default=None,
            help="the evidence topic (default: GOVPIPE_TOPIC_EVIDENCE, governance.evidence.v1)",
        )
        sub.add_argument(
            "--idle",
            type=float,
            default=DEFAULT_IDLE_S,
            metavar="S",
            help="quiet seconds that mean the topic has been read to the end",
        )
        sub.add_argument(
            "--max-seconds", type=float, default=None, metavar="N", help="stop reading after N s"
        )
        sub.add_argument(
            "--worker",
            default=None,
            metavar="URL",
            help="the stage-2 worker asked first for a task (default: GOVPIPE_TRACE_URL; "
            "'off': read the evidence topic only)",
        )

    task = what.add_parser("task", help="one task's dossier and its delegation chain")
    task.add_argument("task_id", metavar="ID")
    task.add_argument("--html", type=Path, default=None, metavar="FILE", help="write an HTML page")
    common(task)
    task.set_defaults(handler=_handle)

    alert = what.add_parser("alert", help="the task or tasks behind a finding")
    alert.add_argument("alert_id", metavar="ALERT_ID")
    common(alert)
    alert.set_defaults(handler=_handle)

    identity = what.add_parser("identity", help="an identity's recent tasks with their verdicts")
    identity.add_argument("identity_id", metavar="ID")
    identity.add_argument(
        "--since",
        metavar="TIME",
        default=None,
        help="only tasks from TIME: ISO-8601, epoch ms, or a span before now (30m, 2h, 7d)",
    )
    common(identity)
    identity.set_defaults(handler=_handle)

    approval = what.add_parser("approval", help="the task or tasks an approval belongs to")
    approval.add_argument("approval_id", metavar="ID")
    common(approval)
    approval.set_defaults(handler=_handle)


def colour_wanted(stream: Any, environ: Any = os.environ) -> bool:
    """Colour only on a terminal, and never with ``NO_COLOR`` set (no-color.org)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and not environ.get("NO_COLOR")


def topic_source(args: argparse.Namespace, settings: Any) -> Any:
    """Today's ``DossierSource``: one scan of the evidence topic (see the module doc)."""
    from pipeline.commands._kafka import require_broker
    from pipeline.evidence.codec import EvidenceCodec
    from pipeline.evidence.source import Progress, TopicScan
    from pipeline.report.collect import TopicReader

    require_broker(settings)
    if args.topic is None:
        args.topic = settings.topic_evidence
    reader = TopicReader(settings, args.topic, idle_s=args.idle, max_seconds=args.max_seconds)
    codec = EvidenceCodec(topic=args.topic, registry_url=settings.schema_registry_url)
    return TopicScan(reader, codec, progress=Progress())


def worker_first_source(args: argparse.Namespace, settings: Any) -> Any:
    """The worker asked first for tasks, the topic for the rest (``evidence/remote.py``);
    the topic alone when no worker URL is set (``--worker off``)."""
    from pipeline.evidence.remote import WorkerFirst

    url = args.worker if args.worker is not None else settings.trace_worker_url
    if url in (None, "off"):
        return topic_source(args, settings)
    topic = args.topic or settings.topic_evidence
    return WorkerFirst(url, lambda: topic_source(args, settings), topic)


def say_sources(source: Any, topic: str, err: Any = None) -> None:
    """Which source answered, on stderr (stdout stays the same whichever did)."""
    err = err if err is not None else sys.stderr
    describe = getattr(source, "describe", None)
    lines = describe() if describe is not None else [f"answered from the topic {topic}"]
    for line in lines:
        print(line, file=err)


def run(args: argparse.Namespace, source: Any, out: Any = None, now_ms: int | None = None) -> int:
    """The command against any ``DossierSource`` (tests pass a ``MemorySource``)."""
    from pipeline.errors import ConfigError
    from pipeline.evidence.source import Query, resolve_chain
    from pipeline.evidence.views import (
        render_identity,
        render_trace,
        to_json,
        trace_payload,
    )
    from pipeline.tailview import clean

    out = out if out is not None else sys.stdout
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    colour = colour_wanted(out) and not args.as_json
    what = args.trace_what

    if what == "identity":
        since = None
        if args.since:
            from pipeline.report.scope import parse_time

            try:
                since = parse_time(args.since, now_ms)
            except ValueError as exc:
                raise ConfigError(f"--since: {exc}") from None
        dossiers = source.search(Query(identity_id=args.identity_id, since_ms=since))
        if args.as_json:
            query = {"identity_id": args.identity_id, "since_ms": since}
            traces = [{"dossier": d, "chain": resolve_chain(source, d)} for d in dossiers]
            out.write(to_json(trace_payload(query, traces)) + "\n")
        else:
            out.write(render_identity(args.identity_id, dossiers, colour=colour))
        return 0 if dossiers else 1

    if what == "task":
        found = source.get(args.task_id)
        dossiers = [found] if found is not None else []
        query = {"task_id": args.task_id}
    elif what == "alert":
        dossiers = source.search(Query(alert_id=args.alert_id))
        query = {"alert_id": args.alert_id}
    else:
        dossiers = source.search(Query(approval_id=args.approval_id))
        query = {"approval_id": args.approval_id}
    traces = [{"dossier": d, "chain": resolve_chain(source, d)} for d in dossiers]

    if args.as_json:
        out.write(to_json(trace_payload(query, traces)) + "\n")
    elif not traces:
        (key, value), *_ = query.items()
        out.write(f"no dossier for {key.replace('_', ' ')} {clean(value)} in the evidence\n")
    else:
        for i, trace in enumerate(traces):
            if i:
                out.write("\n")
            out.write(render_trace(trace, colour=colour))
    html_path = getattr(args, "html", None)
    if html_path is not None and traces:
        from pipeline.evidence.codec import DEFAULT_TOPIC
        from pipeline.report.build import write_atomically
        from pipeline.report.evidence import render_evidence_page

        topic = args.topic or DEFAULT_TOPIC
        answers = getattr(source, "answers", None)
        where = [w for t, w in answers if t == args.task_id][:1] if answers else []
        page = render_evidence_page(traces[0], generated_at_ms=now_ms, sources=where or [topic])
        write_atomically(html_path, page)
        print(f"wrote {html_path}", file=sys.stderr)
    return 0 if traces else 1


def _handle(args: argparse.Namespace) -> int:
    from pipeline.errors import GovpipeError
    from pipeline.settings import get_settings

    if args.max_seconds is not None and args.max_seconds <= 0:
        raise GovpipeError("--max-seconds must be positive")
    settings = get_settings()
    source = worker_first_source(args, settings)
    try:
        return run(args, source)
    except BrokenPipeError:  # `govpipe trace … | head`
        return 0
    finally:
        say_sources(source, args.topic or settings.topic_evidence)
