"""Broker + Redis together, as `govpipe services`, the demo and the tests start them."""

from __future__ import annotations

from types import TracebackType

from pipeline.embedded.broker import EmbeddedBroker
from pipeline.embedded.redis import LocalRedis
from pipeline.settings import redact_url


class EmbeddedServices:
    """A Tansu broker and, unless ``use_existing_redis``, a Valkey of their own.

    By default nothing is written into a Redis these services did not start: a
    restart begins with an empty registry and no state from a previous run.
    """

    def __init__(
        self,
        redis_url: str,
        broker_port: int | None = None,
        *,
        use_existing_redis: bool = False,
        key_prefix: str = "nhi:",
    ) -> None:
        self.broker = EmbeddedBroker(port=broker_port)
        self.redis = LocalRedis(redis_url, use_existing=use_existing_redis)
        self.key_prefix = key_prefix

    def start(self) -> EmbeddedServices:
        self.broker.start()
        try:
            self.redis.start()
        except BaseException:
            self.broker.stop()
            raise
        return self

    def stop(self) -> None:
        try:
            self.redis.stop()
        finally:
            self.broker.stop()

    def exports(self) -> list[str]:
        """Shell lines that point other govpipe commands at these services."""
        lines = [f"export KAFKA_BOOTSTRAP_SERVERS={self.broker.bootstrap}"]
        if redact_url(self.redis.url) == self.redis.url:
            lines.append(f"export REDIS_URL={self.redis.url}")
        else:  # never print a password: the caller already has it in REDIS_URL
            lines.append(f"# REDIS_URL unchanged ({redact_url(self.redis.url)})")
        lines.append(f"export GOVPIPE_REDIS_KEY_PREFIX={self.key_prefix}")
        return lines

    def describe(self) -> str:
        kind = (
            "embedded Valkey (in memory, empty at every start)"
            if self.redis.embedded
            else "existing Redis (asked for with --existing-redis)"
        )
        return (
            f"broker: Tansu at {self.broker.bootstrap} "
            f"(memory storage; log {self.broker.log_path})\n"
            f"redis:  {kind} at {redact_url(self.redis.url)}, key prefix {self.key_prefix}"
        )

    def __enter__(self) -> EmbeddedServices:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
