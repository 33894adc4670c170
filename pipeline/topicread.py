"""Reading an output topic without joining a consumer group (tail, report, demo).

``assign()`` on every partition, never ``subscribe()``: nothing is committed, no
group is joined, and there is no join to wait for (Tansu holds a joining member
for half the session timeout, docs/internals.md).
"""

from __future__ import annotations

import uuid
from typing import Any

from pipeline.errors import GovpipeError
from pipeline.settings import Settings


def open_reader(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool = True,
    eof_events: bool = False,
    purpose: str = "read",
    extra: dict[str, Any] | None = None,
) -> tuple[Any, int]:
    """A confluent-kafka Consumer assigned to every partition of ``topic``, and their count."""
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition

    consumer = Consumer(
        {
            **settings.confluent_config(),
            "group.id": f"govpipe-{purpose}-{uuid.uuid4()}",  # required by librdkafka; never joined
            "enable.auto.commit": False,
            "enable.partition.eof": eof_events,
            **(extra or {}),
        }
    )
    meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        consumer.close()
        raise GovpipeError(f"topic {topic} does not exist: run `govpipe topics create`")
    partitions = sorted(meta.partitions)
    start = OFFSET_BEGINNING if from_beginning else OFFSET_END
    consumer.assign([TopicPartition(topic, p, start) for p in partitions])
    return consumer, len(partitions)
