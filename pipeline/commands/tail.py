"""`govpipe tail alerts|metrics|dlq`: a readable live view of an output topic.

Reads with ``assign()`` on every partition, not ``subscribe()``: no consumer group
to join (a join waits on the broker, docs/internals.md) and no offsets committed, so a
tail never disturbs anyone. Formatting lives in ``pipeline.tailview``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any, Literal, TextIO

import orjson

from pipeline import tailview
from pipeline.errors import InfraError, RejectedInput
from pipeline.settings import get_settings
from pipeline.topics import spec_for

Kind = Literal["alerts", "metrics", "dlq"]
#: One consumed record -> (line, is_warning); warnings go to stderr.
Render = Callable[[Any], tuple[str, bool]]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "tail", help="a readable live view of alerts, metrics or the DLQ"
    )
    parser.add_argument("what", choices=["alerts", "metrics", "dlq"], help="which topic to show")
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        help="start at the oldest record (default: only records that arrive from now on)",
    )
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="stop after N records")
    parser.add_argument(
        "--follow",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep waiting for new records (--no-follow: stop once the topic is read)",
    )
    parser.add_argument("--json", action="store_true", dest="as_json", help="one JSON per line")
    parser.add_argument(
        "--idle", type=float, default=2.0, metavar="S", help="--no-follow: quiet seconds at the end"
    )
    parser.set_defaults(handler=_handle)


def renderer(kind: Kind, *, as_json: bool, colour: bool, metric_codec: Any = None) -> Render:
    """How one record of ``kind`` is shown; bad records become warnings, never errors."""

    def where(msg: Any) -> tuple[int, int]:
        return int(msg.partition()), int(msg.offset())

    def alerts(msg: Any) -> tuple[str, bool]:
        value = msg.value()
        try:
            line = tailview.format_alert(value, colour=colour)
        except ValueError as exc:
            return tailview.warning("alerts", *where(msg), str(exc)), True
        if as_json:
            return orjson.dumps(orjson.loads(value)).decode(), False
        return line, False

    def metrics(msg: Any) -> tuple[str, bool]:
        try:
            record = metric_codec.decode(msg.value())
        except (RejectedInput, InfraError) as exc:
            return tailview.warning("metrics", *where(msg), f"undecodable ({exc})"), True
        if as_json:
            return orjson.dumps(record.to_dict()).decode(), False
        return tailview.format_metric(record), False

    def dlq(msg: Any) -> tuple[str, bool]:
        if as_json:
            return orjson.dumps(tailview.dlq_json(msg.value(), msg.headers())).decode(), False
        return tailview.format_dlq(msg.value(), msg.headers(), colour=colour), False

    return {"alerts": alerts, "metrics": metrics, "dlq": dlq}[kind]


def follow(
    consumer: Any,
    render: Render,
    *,
    partitions: int,
    limit: int | None = None,
    keep_following: bool = True,
    idle_s: float = 2.0,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Print records until ``limit``, or (``keep_following`` False) until read and quiet.

    "Read" is every partition at EOF and nothing new for ``idle_s``; a broker whose
    high watermark lags (Tansu, docs/internals.md) may never say EOF, so 5 x ``idle_s`` of
    silence also ends it.
    """
    from confluent_kafka import KafkaError

    shown = 0
    at_end: set[int] = set()
    last = clock()
    while True:
        for msg in consumer.consume(500, timeout=0.5):
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                    continue
                if error.fatal():
                    raise InfraError(f"Kafka: {error.str()}")
                print(f"! kafka: {error.str()}", file=err, flush=True)
                continue
            at_end.discard(msg.partition())
            last = clock()
            line, is_warning = render(msg)
            print(line, file=err if is_warning else out, flush=True)
            if not is_warning:
                shown += 1
                if limit is not None and shown >= limit:
                    return 0
        quiet = clock() - last
        done = len(at_end) >= partitions or quiet >= 5 * idle_s
        if not keep_following and quiet >= idle_s and done:
            return 0


def _existing(consumer: Any, topic: str, partitions: int) -> int | None:
    """Records currently in ``topic`` (high minus low watermark), None if unknown."""
    from confluent_kafka import KafkaException, TopicPartition

    total = 0
    try:
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=2)
            total += max(0, high - low)
    except KafkaException:
        return None
    return total


def _handle(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaException

    from pipeline.commands._kafka import client_config, require_broker
    from pipeline.topicread import open_reader

    settings = get_settings()
    require_broker(settings)
    kind: Kind = args.what
    topic = spec_for(settings, kind).name
    codec = None
    if kind == "metrics":
        from pipeline.metrics.codec import MetricCodec

        codec = MetricCodec.from_settings(settings)
    render = renderer(
        kind,
        as_json=args.as_json,
        colour=sys.stdout.isatty() and not args.as_json,
        metric_codec=codec,
    )
    consumer, partitions = open_reader(
        settings,
        topic,
        from_beginning=args.from_beginning,
        eof_events=True,
        purpose="tail",
        extra=client_config(),
    )
    if not args.from_beginning:
        print(tailview.waiting_line(topic, _existing(consumer, topic, partitions)), file=sys.stderr)
    try:
        return follow(
            consumer,
            render,
            partitions=partitions,
            limit=args.limit,
            keep_following=args.follow,
            idle_s=args.idle,
        )
    except BrokenPipeError:  # `govpipe tail alerts | head`
        return 0
    except KafkaException as exc:
        raise InfraError(f"Kafka: {exc}") from None
    finally:
        consumer.close()
