"""`govpipe dlq replay`: send dead letters back to the input topic once the cause is fixed.

Reads ``agent.events.dlq.v1`` from the oldest record to the end (assign, until
quiet; no group, nothing committed), keeps the records whose ``error.code`` matches
``--code`` (every code by default), skips ``redacted: true`` ones unless
``--include-redacted``, and produces each kept record's key and value, byte for
byte, to the input topic (or ``--to``) with ``replayed.from: <dlq>@<p>:<o>``.

Replay is at-least-once like the rest of govpipe: running it twice sends the
records twice, and the pipeline drops the repeats by ``event_id``. ``--dry-run``
prints the counts by code without producing anything. Payloads are never printed,
except as a short escaped preview with ``--show``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from pipeline.dlqreplay import (
    ReplayCounts,
    ReplayFilter,
    decide,
    error_code,
    parse_codes,
    replay_headers,
    show_line,
    summary_lines,
)
from pipeline.errors import GovpipeError, InfraError
from pipeline.settings import Settings, get_settings
from pipeline.tailview import header_map
from pipeline.topics import MAX_MESSAGE_BYTES

DELIVERY_TIMEOUT_S = 60.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("dlq", help="replay dead letters to the input topic")
    sub = parser.add_subparsers(dest="dlq_command", required=True)
    replay = sub.add_parser(
        "replay",
        help="re-publish dead letters (bytes and key unchanged) to the input topic",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    replay.add_argument(
        "--code",
        action="append",
        metavar="CODE",
        help="only this error.code (repeat, or comma-separate; default: every code)",
    )
    replay.add_argument(
        "--limit", type=int, default=None, metavar="N", help="replay at most N records"
    )
    replay.add_argument(
        "--dry-run", action="store_true", help="count what would be replayed, by code; send nothing"
    )
    replay.add_argument(
        "--to", default=None, metavar="TOPIC", help="target topic (default: the input topic)"
    )
    replay.add_argument(
        "--include-redacted",
        action="store_true",
        help="also replay records whose bytes were redacted (they differ from the original)",
    )
    replay.add_argument(
        "--show",
        action="store_true",
        help="print one line per record with a short, escaped preview of key and value",
    )
    replay.add_argument(
        "--idle", type=float, default=2.0, metavar="S", help="quiet seconds that end the read"
    )
    replay.add_argument(
        "--max-seconds", type=float, default=None, metavar="N", help="stop reading after N seconds"
    )
    replay.set_defaults(handler=_handle_replay)


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    rule: ReplayFilter = field(default_factory=ReplayFilter)
    limit: int | None = None
    dry_run: bool = False
    to: str | None = None
    show: bool = False
    idle_s: float = 2.0
    max_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class ReplayResult:
    counts: ReplayCounts
    target: str
    limited: bool
    truncated: bool


def _producer(settings: Settings) -> Any:
    from confluent_kafka import Producer

    return Producer(
        {
            **settings.confluent_config(),
            "acks": "all",
            "linger.ms": 20,
            "message.max.bytes": MAX_MESSAGE_BYTES + 64 * 1024,
        }
    )


def _check_topic(client: Any, topic: str) -> None:
    meta = client.list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise GovpipeError(f"topic {topic} does not exist: run `govpipe topics create`")


def replay(
    settings: Settings,
    options: ReplayOptions,
    *,
    out: TextIO = sys.stdout,
    producer: Any = None,
) -> ReplayResult:
    """Read the DLQ and replay (or, ``dry_run``, count) the dead letters that match."""
    from confluent_kafka import KafkaException

    from pipeline.report.collect import TopicReader

    if options.limit is not None and options.limit < 1:
        raise GovpipeError("--limit must be at least 1")
    source = settings.topic_dlq
    target = options.to or settings.topic_events
    if target == source:
        raise GovpipeError("--to is the DLQ itself: that would replay the dead letters into it")
    counts = ReplayCounts()
    failures: list[str] = []
    limited = False

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    if not options.dry_run and producer is None:
        producer = _producer(settings)
    try:
        if producer is not None:
            _check_topic(producer, target)
        reader = TopicReader(
            settings, source, idle_s=options.idle_s, max_seconds=options.max_seconds
        )
        records = iter(reader)
        for record in records:
            headers = header_map(record.headers)
            decision = decide(headers, options.rule)
            counts.add(decision, error_code(headers))
            if decision != "replay":
                continue
            if options.show:
                print(
                    show_line(
                        record.partition, record.offset, record.key, record.value, record.headers
                    ),
                    file=out,
                    flush=True,
                )
            if not options.dry_run:
                _produce(
                    producer,
                    target,
                    record.key,
                    record.value,
                    replay_headers(source, record.partition, record.offset),
                    delivered,
                )
            if options.limit is not None and counts.replayed >= options.limit:
                limited = True
                records.close()  # closes the consumer now, not when collected
                break
        if producer is not None and not options.dry_run:
            remaining = producer.flush(DELIVERY_TIMEOUT_S)
            if remaining:
                failures.append(f"{remaining} record(s) not delivered in {DELIVERY_TIMEOUT_S:g}s")
    except KafkaException as exc:
        raise InfraError(f"Kafka: {exc}") from None
    if failures:
        raise InfraError(
            f"replay to {target} failed for {len(failures)} record(s): {failures[0]} "
            "(records already sent stay sent; replaying again is safe, repeats are dropped "
            "by event_id)"
        )
    return ReplayResult(counts, target, limited, reader.truncated)


def _produce(
    producer: Any,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[str, bytes]],
    on_delivery: Any,
) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
            producer.poll(0)
            return
        except BufferError:  # local queue full: serve delivery callbacks, then retry
            producer.poll(0.1)


def _handle_replay(args: argparse.Namespace) -> int:
    from pipeline.commands._kafka import require_broker

    settings = get_settings()
    require_broker(settings)
    options = ReplayOptions(
        rule=ReplayFilter(parse_codes(args.code), args.include_redacted),
        limit=args.limit,
        dry_run=args.dry_run,
        to=args.to,
        show=args.show,
        idle_s=args.idle,
        max_seconds=args.max_seconds,
    )
    result = replay(settings, options)
    for line in summary_lines(
        result.counts,
        source=settings.topic_dlq,
        target=result.target,
        dry_run=options.dry_run,
        limited=result.limited,
        truncated=result.truncated,
    ):
        print(line)
    return 0
