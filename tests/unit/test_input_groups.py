"""Stage 1 takes a fetched batch in bounded groups (app.input_groups)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from pipeline.app import confirm, enqueue, input_groups


def _records(*sizes: int) -> list[SimpleNamespace]:
    return [SimpleNamespace(value=b"x" * n if n else None, n=i) for i, n in enumerate(sizes)]


def test_groups_keep_order_and_stay_under_the_bound() -> None:
    batch = _records(*[300] * 50)
    groups = input_groups(batch, max_bytes=1000)
    assert [r.n for g in groups for r in g] == list(range(50))
    assert all(sum(len(r.value) for r in g) <= 1000 for g in groups)
    assert [len(g) for g in groups][:-1] == [3] * (len(groups) - 1)


def test_a_record_larger_than_the_bound_goes_alone() -> None:
    groups = input_groups(_records(10, 5000, 10, 10), max_bytes=1000)
    assert [[r.n for r in g] for g in groups] == [[0], [1], [2, 3]]


def test_tombstones_and_an_empty_batch() -> None:
    assert input_groups([]) == []
    assert [[r.n for r in g] for g in input_groups(_records(0, 0, 0), max_bytes=1)] == [[0, 1, 2]]


class _Topic:
    """Stands in for a faust topic at the send boundary: ``send`` returns a future
    that fails for the first ``failures`` messages (a broker refusing them)."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.acked: list[bytes] = []

    async def send(self, *, force: bool, value: bytes) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.failures:
            self.failures -= 1
            future.set_exception(OSError("broker unavailable"))
        else:
            self.acked.append(value)
            future.set_result(None)
        return future


def test_confirm_resends_the_whole_batch_when_any_send_failed() -> None:
    async def run() -> list[bytes]:
        topic = _Topic(failures=1)
        messages = [(topic, {"value": b"%d" % i}) for i in range(5)]
        await confirm(messages, await enqueue(messages))
        return topic.acked

    acked = asyncio.run(run())
    assert sorted(set(acked)) == [b"%d" % i for i in range(5)], "every message delivered"
    assert len(acked) == 9, "the 4 that got through the first time are sent again"
