"""A faust Table's changelog, written a unit at a time.

faust writes one changelog record per ``table[key] = value``, each through its
per-message producer path: ~182 µs per write measured on Tansu, i.e. about
5,500 state updates a second, which bounded stage 2. Here a unit's writes go
to the Table's store directly and to its changelog topic as aiokafka record
batches, one produce per partition (the same topic, partition, key and value
bytes that faust would write, so faust's own recovery reads them back after a
restart or rebalance: faust's "json" codec, which a Table without
key and value types uses for both). The caller waits for the acknowledgement before it
sends anything that depends on the state.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from pipeline.flow.stage2 import Write

log = logging.getLogger(__name__)


class TableLog:
    def __init__(self, app: Any, table: Any) -> None:
        self.app = app
        self.table = table

    def get(self, key: str) -> Any:
        """Read the store without faust's per-get sensor call."""
        return self.table.data.get(key)

    def keys(self) -> Any:
        return self.table.data.keys()

    async def write(
        self, partition: int, writes: list[Write], wait: bool = True, retry_delay: float = 0.2
    ) -> None:
        """Apply ``writes`` to the store and append them to the changelog, in order.

        ``wait=False`` returns once the records are queued behind earlier writes
        (a failure is logged, not retried: for writes whose loss is harmless).
        """
        if not writes:
            return
        data = self.table.data
        for key, value, _ in writes:
            if value is None:  # an expired subject: deleted, a tombstone in the changelog
                data.pop(key, None)
            else:
                data[key] = value
        while True:
            try:
                futures = await self._produce(partition, writes)
                if wait:
                    await asyncio.gather(*futures)
                else:
                    for future in futures:
                        future.add_done_callback(self._log_failure)
                return
            except Exception as exc:  # the writes are idempotent: append them again
                log.warning(
                    "changelog write failed (%s); writing %d records again in %.1f s",
                    exc,
                    len(writes),
                    retry_delay,
                )
                await asyncio.sleep(retry_delay)
                retry_delay = min(5.0, retry_delay * 2)

    def _log_failure(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None:
            log.warning("unacknowledged changelog write failed: %s", future.exception())

    async def _produce(self, partition: int, writes: list[Write]) -> list[asyncio.Future[Any]]:
        producer = self.app.producer._ensure_producer()  # the aiokafka producer
        topic = self.table.changelog_topic.get_topic_name()
        futures = []
        batch = producer.create_batch()
        count = 0
        for key, _, value in writes:
            raw_key = orjson.dumps(key)
            if batch.append(key=raw_key, value=value, timestamp=None) is None:
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                # the first record of a batch always fits, whatever its size
                batch.append(key=raw_key, value=value, timestamp=None)
                count = 0
            count += 1
        if count:
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        return futures
