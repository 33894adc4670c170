"""`govpipe publish FILE`: validate JSON-lines events, then publish them (batched).

Everything is validated before anything is sent: a file with one bad line sends
nothing (unless ``--skip-invalid``), so a half-published file never has to be
untangled. Bad lines are reported by number with field and reason, never with
the value (it may be a secret).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson
from pydantic import ValidationError

from pipeline.records import AgentEvent
from pipeline.sdk import validation_problems


@dataclass(frozen=True, slots=True)
class LineProblem:
    line: int
    problems: list[tuple[str, str]]

    def __str__(self) -> str:
        # a problem of the whole line (not JSON, truncated) has no field to name
        return f"line {self.line}: " + "; ".join(
            m if f == "line" else f"{f}: {m}" for f, m in self.problems
        )


@dataclass(slots=True)
class ValidationReport:
    valid: int = 0
    blank: int = 0
    bad: list[LineProblem] = field(default_factory=list)

    @property
    def bad_lines(self) -> set[int]:
        return {p.line for p in self.bad}


def json_problem(raw: bytes | str, exc: orjson.JSONDecodeError) -> str:
    """Why a line is not JSON; a line cut short says so (the likeliest cause: a
    truncated write or copy), with the column where the input ended."""
    if exc.msg.startswith(("unexpected end of data", "EOF while parsing")):
        end = len(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw)
        return f"truncated JSON (unexpected end of input at column {end + 1})"
    return f"not JSON ({exc.msg} at column {exc.colno})"


def parse_line(raw: bytes | str) -> tuple[dict[str, Any] | None, list[tuple[str, str]]]:
    """One JSON line → (the raw event, no problems) or (None, problems)."""
    raw = raw.rstrip(b"\r\n") if isinstance(raw, bytes) else raw.rstrip("\r\n")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return None, [("line", json_problem(raw, exc))]
    if not isinstance(data, dict):
        return None, [("line", f"expected a JSON object, got {type(data).__name__}")]
    try:
        AgentEvent.model_validate(data)
    except ValidationError as exc:
        return None, validation_problems(exc)
    return data, []


def validate_lines(lines: Iterable[bytes | str]) -> ValidationReport:
    """Validate every line (numbered from 1; blank lines are skipped)."""
    report = ValidationReport()
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            report.blank += 1
            continue
        event, problems = parse_line(raw)
        if event is None:
            report.bad.append(LineProblem(number, problems))
        else:
            report.valid += 1
    return report


def events_of(lines: Iterable[bytes | str], skip: set[int]) -> Iterator[dict[str, Any]]:
    """The events of the lines that passed validation."""
    for number, raw in enumerate(lines, start=1):
        if number in skip or not raw.strip():
            continue
        event = orjson.loads(raw)
        if isinstance(event, dict):
            yield event


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "publish",
        help="validate and publish JSON-lines events",
        description="Validate every line of FILE (JSON lines, '-' for stdin) against the "
        "agent.events.v1 contract, then publish them with the batching SDK. Nothing is "
        "sent if a line is bad, unless --skip-invalid.",
    )
    parser.add_argument("file", metavar="FILE", help="JSON-lines file, or - for stdin")
    parser.add_argument("--format", choices=["avro", "json"], default="avro", dest="fmt")
    parser.add_argument("--batch-size", type=int, default=300, help="events per record")
    parser.add_argument("--batch-ms", type=float, default=20.0, help="max batch age (ms)")
    parser.add_argument("--single", action="store_true", help="one event per record")
    parser.add_argument(
        "--skip-invalid", action="store_true", help="publish the valid lines, skip the bad ones"
    )
    parser.add_argument("--topic", help="override the input topic")
    parser.add_argument(
        "--progress-every",
        type=int,
        default=100_000,
        metavar="N",
        help="progress line every N events (and at most once a second)",
    )
    parser.add_argument(
        "--max-errors", type=int, default=20, metavar="N", help="bad lines to print (default 20)"
    )
    parser.set_defaults(handler=run)


def _open(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    return open(path, "rb")


def run(args: argparse.Namespace) -> int:
    err = sys.stderr
    if args.file == "-":
        lines: list[bytes] | None = sys.stdin.buffer.read().splitlines()
    else:
        lines = None
        try:
            open(args.file, "rb").close()
        except OSError as exc:
            print(f"govpipe publish: cannot read {args.file}: {exc.strerror}", file=err)
            return 2

    def source() -> Iterable[bytes]:
        if lines is not None:
            return lines
        return _read(args.file)

    report = validate_lines(source())
    for problem in report.bad[: args.max_errors]:
        print(problem, file=err)
    if len(report.bad) > args.max_errors:
        print(f"... and {len(report.bad) - args.max_errors} more bad lines", file=err)
    if report.bad and not args.skip_invalid:
        print(
            f"govpipe publish: {len(report.bad)} bad line(s) of "
            f"{report.valid + len(report.bad)}; nothing was sent (use --skip-invalid to send "
            "the valid ones)",
            file=err,
        )
        return 1
    if report.valid == 0:
        print("govpipe publish: no events to send", file=err)
        return 0 if not report.bad else 1

    from pipeline.commands._kafka import client_config, require_broker
    from pipeline.sdk import Publisher
    from pipeline.settings import get_settings

    settings = get_settings()
    require_broker(settings)
    started = time.monotonic()
    last_report = started
    next_count = args.progress_every
    with Publisher(
        settings,
        topic=args.topic,
        fmt=args.fmt,
        batch_max_events=args.batch_size,
        batch_max_ms=args.batch_ms,
        config=client_config(),
    ) as pub:
        send = pub.publish_single if args.single else pub.publish
        for n, event in enumerate(events_of(source(), report.bad_lines), start=1):
            send(event)
            now = time.monotonic()
            if n >= next_count or now - last_report >= 1.0:
                rate = n / max(now - started, 1e-9)
                print(f"published {n}/{report.valid} events ({rate:,.0f} ev/s)", file=err)
                last_report = now
                next_count = n + args.progress_every
        pub.flush()
        records = pub.records_sent
    elapsed = time.monotonic() - started
    skipped = f", skipped {len(report.bad)} bad line(s)" if report.bad else ""
    mode = "one event per record" if args.single else "batched"
    topic = args.topic or settings.topic_events
    print(
        f"published {report.valid} events in {records} records to {topic} "
        f"({args.fmt}, {mode}) in {elapsed:.1f}s{skipped}",
        file=err,
    )
    return 0


def _read(path: str) -> Iterator[bytes]:
    with _open(path) as f:
        yield from f
