"""retry_forever: one WARNING per outage, INFO on recovery, capped backoff, stop."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pipeline.errors import InfraError, RejectedInput
from pipeline.retry import retry_forever

MSG = "redis unavailable at redis://:***@127.0.0.1:1/0 (ConnectionError)"


class Flaky:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise InfraError(MSG)
        return "done"


def test_retries_until_success_logging_once_per_outage(caplog: pytest.LogCaptureFixture) -> None:
    flaky = Flaky(4)
    log = logging.getLogger("test.retry")
    with caplog.at_level(logging.DEBUG, logger="test.retry"):
        result = asyncio.run(
            retry_forever(flaky, log=log, what="redis", initial_s=0.001, max_s=0.004)
        )
    assert result == "done" and flaky.calls == 5
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(warnings) == 1 and len(infos) == 1
    assert warnings[0].getMessage() == f"{MSG}; pausing input, retry in 0.0 s"
    assert "available again after" in infos[0].getMessage()
    assert "4 failed attempts" in infos[0].getMessage()


def test_backoff_doubles_up_to_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    delays: list[float] = []

    async def fake_sleep(delay: float) -> None:
        delays.append(delay)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    asyncio.run(retry_forever(Flaky(8), initial_s=0.1, max_s=5.0))
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0])


def test_no_log_when_the_first_call_succeeds(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="pipeline.retry"):
        assert asyncio.run(retry_forever(Flaky(0))) == "done"
    assert [r for r in caplog.records if r.name == "pipeline.retry"] == []


def test_stop_event_ends_the_wait_with_the_last_error() -> None:
    async def scenario() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, stop.set)
        await retry_forever(Flaky(10**6), initial_s=10.0, stop=stop)

    with pytest.raises(InfraError):
        asyncio.run(asyncio.wait_for(scenario(), 2.0))


def test_other_errors_propagate_at_once() -> None:
    async def bad() -> None:
        raise RejectedInput("bad", "not an infra problem")

    with pytest.raises(RejectedInput):
        asyncio.run(retry_forever(bad))
