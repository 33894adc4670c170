"""Retry a batch operation through a dependency outage, never dropping it.

docs/internals.md: an exception escaping into a faust agent makes faust restart the
agent and drop the in-flight record, so the stage itself must pause and retry
until the dependency is back (or the worker stops). One WARNING per outage and
one INFO on recovery keep the log readable during a long outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pipeline.errors import InfraError

T = TypeVar("T")

_log = logging.getLogger(__name__)


async def retry_forever(
    operation: Callable[[], Awaitable[T]],
    *,
    log: logging.Logger | None = None,
    what: str = "redis",
    initial_s: float = 0.1,
    max_s: float = 5.0,
    factor: float = 2.0,
    stop: asyncio.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Await ``operation()`` until it stops raising :class:`InfraError`.

    ``operation`` must be idempotent (it is called again with the same input).
    Backoff doubles from ``initial_s`` up to ``max_s``. If ``stop`` is set while
    waiting, the last InfraError is raised so the caller can shut down; other
    exceptions propagate at once.
    """
    logger = log or _log
    delay = initial_s
    outage_started: float | None = None
    failures = 0
    while True:
        try:
            result = await operation()
        except InfraError as exc:
            failures += 1
            if outage_started is None:
                outage_started = clock()
                logger.warning("%s; pausing input, retry in %.1f s", exc, delay)
            else:
                logger.debug("%s; attempt %d failed, retry in %.1f s", exc, failures, delay)
            if stop is not None:
                if stop.is_set():
                    raise
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    raise
            else:
                await asyncio.sleep(delay)
            delay = min(delay * factor, max_s)
            continue
        if outage_started is not None:
            logger.info(
                "%s available again after %.1f s outage (%d failed attempts); resuming input",
                what,
                clock() - outage_started,
                failures,
            )
        return result
