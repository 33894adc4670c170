"""Retry with capped exponential backoff, for dependencies that must not drop data.

While a call is being retried the stage does not take new input (the agent is
blocked inside its batch), so memory stays bounded and nothing is skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pipeline.errors import InfraError

T = TypeVar("T")


async def retry_forever(
    call: Callable[[], Awaitable[T]],
    what: str,
    log: logging.Logger,
    *,
    first_delay: float = 0.1,
    max_delay: float = 5.0,
) -> T:
    """Run ``call`` until it succeeds; InfraError means "pause and try again"."""
    delay = first_delay
    started: float | None = None
    attempts = 0
    while True:
        try:
            result = await call()
        except InfraError as exc:
            attempts += 1
            if started is None:
                started = time.monotonic()
            if attempts == 1 or attempts % 10 == 0:
                log.warning(
                    "%s unavailable (%s); input paused, attempt %d, retry in %.1f s",
                    what,
                    exc,
                    attempts,
                    delay,
                )
            await asyncio.sleep(delay)
            delay = min(max_delay, delay * 2)
            continue
        if started is not None:
            log.info(
                "%s back after %.1f s and %d retries; input resumed",
                what,
                time.monotonic() - started,
                attempts,
            )
        return result
