"""Reading and writing topics in tests with confluent-kafka.

Tansu's high watermark can lag what it acknowledged (docs/internals.md), so "read to
the end" means "read until quiet", never "until the high watermark".
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


def produce(
    bootstrap: str,
    topic: str,
    values: Iterable[bytes | tuple[bytes | None, bytes]],
    partition: int | None = None,
    spread: int | None = None,
) -> int:
    """Produce ``values`` (a value, or (key, value)) and wait for every delivery.

    ``partition``: all to that partition; ``spread``: record k to partition k mod
    ``spread``, so every partition advances through the input together (the sticky
    partitioner sends runs to one partition); neither: the producer's partitioner.
    """
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "message.max.bytes": 9 * 1024 * 1024,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    errors: list[object] = []
    count = 0

    def on_delivery(err: object, msg: object) -> None:
        if err is not None:
            errors.append(err)

    for k, item in enumerate(values):
        key, value = item if isinstance(item, tuple) else (None, item)
        to = partition if spread is None else k % spread
        kwargs = {"partition": to} if to is not None else {}
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=on_delivery, **kwargs)
                break
            except BufferError:
                producer.poll(0.05)
        count += 1
        if count % 1000 == 0:
            producer.poll(0)
    remaining = producer.flush(60)
    assert remaining == 0, f"{remaining} records not delivered"
    assert not errors, f"delivery errors: {errors[:3]}"
    return count


def assign_all(consumer: Consumer, topic: str, timeout: float = 10.0) -> None:
    """Read every partition from the start without a consumer group: no group join
    to wait for (Tansu holds joins for half the session timeout, docs/internals.md)."""
    md = consumer.list_topics(topic, timeout=timeout)
    partitions = sorted(md.topics[topic].partitions)
    assert partitions, f"topic {topic} has no partitions"
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])


def consume_until_quiet(
    bootstrap: str,
    topic: str,
    quiet_s: float = 3.0,
    max_s: float = 120.0,
    expect: int | None = None,
    until: Callable[[], bool] | None = None,
) -> list[Record]:
    """Every record of ``topic`` from the start, until nothing new for ``quiet_s``
    (and, with ``until``, until it also says the writer is done: a worker waiting
    for its group to rebalance is quiet, not finished)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.max.bytes": 50 * 1024 * 1024,
            "max.partition.fetch.bytes": 10 * 1024 * 1024,
        }
    )
    assign_all(consumer, topic)
    out: list[Record] = []
    deadline = time.monotonic() + max_s
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            msgs = consumer.consume(1000, timeout=0.5)
            got = False
            for m in msgs:
                if m.error():
                    continue
                got = True
                out.append(
                    Record(
                        m.topic(),
                        m.partition(),
                        m.offset(),
                        m.key(),
                        m.value(),
                        {k: v for k, v in (m.headers() or [])},
                    )
                )
            if got:
                last = time.monotonic()
            elif (
                time.monotonic() - last > quiet_s
                and (expect is None or len(out) >= expect)
                and (until is None or until())
            ):
                break
    finally:
        consumer.close()
    return out


def group_caught_up(bootstrap: str, group: str, topic: str) -> bool:
    """Has consumer group ``group`` committed every partition of ``topic`` to its end?

    A loss by a skipped offset still shows (the group commits past it); a worker
    that has not read everything yet does not pass for finished.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        md = consumer.list_topics(topic, timeout=10)
        parts = [TopicPartition(topic, p) for p in sorted(md.topics[topic].partitions)]
        committed = consumer.committed(parts, timeout=10)
        for tp in committed:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), 10)
            if tp.offset < high:
                return False
        return True
    finally:
        consumer.close()
