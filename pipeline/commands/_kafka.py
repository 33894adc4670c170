"""Broker checks shared by the commands that talk to Kafka (tail, topics, report, …).

``require_broker`` runs before a command builds its clients: a missing or wrong
``KAFKA_BOOTSTRAP_SERVERS`` (the likeliest first mistake: the export lines of
``govpipe services`` were not pasted) becomes one line naming the address and what
to do, within a few seconds, instead of a traceback under a flood of librdkafka
``%3|FAIL`` lines. ``client_logger`` is the ``logger`` the commands give their
confluent-kafka clients: librdkafka's own log lines go through Python logging,
at most one per facility every ``RATE_LIMIT_S`` seconds.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

from pipeline.errors import GovpipeError
from pipeline.settings import Settings

#: librdkafka repeats a failing connection's line every retry; one per window is enough.
RATE_LIMIT_S = 30.0
LOGGER_NAME = "govpipe.kafka"


class BrokerUnreachable(GovpipeError):
    """No Kafka broker answers at the configured bootstrap address."""


class _RateLimit(logging.Filter):
    """Pass the first record of each (level, facility) per window; count the rest."""

    def __init__(self, window_s: float = RATE_LIMIT_S) -> None:
        super().__init__()
        self.window_s = window_s
        self._last: dict[tuple[int, str], float] = {}
        self._suppressed: dict[tuple[int, str], int] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        facility = str(record.args[0]) if isinstance(record.args, tuple) and record.args else ""
        key = (record.levelno, facility)
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.window_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last[key] = now
            skipped = self._suppressed.pop(key, 0)
        if skipped:
            record.msg = f"{record.msg} ({skipped} similar lines suppressed)"
        return True


def client_logger() -> logging.Logger:
    """The logger for confluent-kafka's ``logger`` setting (rate-limited)."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(f, _RateLimit) for f in logger.filters):
        logger.addFilter(_RateLimit())
    return logger


def client_config() -> dict[str, Any]:
    """Extra confluent-kafka settings for the commands' clients."""
    return {"logger": client_logger()}


def _hosts(bootstrap: str) -> list[tuple[str, int]]:
    out = []
    for item in bootstrap.split(","):
        host, _, port = item.strip().rpartition(":")
        out.append((host.strip("[]"), int(port)))
    return out


def _connects(host: str, port: int, timeout: float) -> str | None:
    """None if something accepts TCP connections on host:port, else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except TimeoutError:
        return "no answer"
    except socket.gaierror:
        return "unknown host"
    except ConnectionRefusedError:
        return "connection refused"
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def unreachable_message(bootstrap: str, why: str) -> str:
    unset = "" if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") else ", KAFKA_BOOTSTRAP_SERVERS unset"
    return (
        f"cannot reach the Kafka broker at {bootstrap} ({why}{unset}): start one with "
        "`govpipe services` and export the lines it prints, or set KAFKA_BOOTSTRAP_SERVERS"
    )


def require_broker(settings: Settings, timeout: float = 5.0) -> None:
    """Raise ``BrokerUnreachable`` (one line) unless a Kafka broker answers in ``timeout``."""
    bootstrap = settings.kafka_bootstrap_servers
    reasons = [_connects(h, p, min(timeout, 2.0)) for h, p in _hosts(bootstrap)]
    if all(reasons):
        raise BrokerUnreachable(unreachable_message(bootstrap, sorted(set(map(str, reasons)))[0]))
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]

    admin = AdminClient({**settings.confluent_config(), **client_config()})
    try:
        admin.list_topics(timeout=timeout)
    except KafkaException:
        raise BrokerUnreachable(
            unreachable_message(bootstrap, f"no Kafka metadata within {timeout:g}s")
        ) from None
