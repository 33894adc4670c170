"""Broker + Redis together, as `govpipe services`, the demo and the tests start them."""

from __future__ import annotations

from types import TracebackType

from pipeline.embedded.broker import EmbeddedBroker
from pipeline.embedded.redis import LocalRedis
from pipeline.settings import redact_url


class EmbeddedServices:
    def __init__(self, redis_url: str, broker_port: int | None = None) -> None:
        self.broker = EmbeddedBroker(port=broker_port)
        self.redis = LocalRedis(redis_url)

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
        return lines

    def describe(self) -> str:
        kind = "embedded Valkey" if self.redis.embedded else "existing Redis"
        return (
            f"broker: Tansu at {self.broker.bootstrap} "
            f"(memory storage; log {self.broker.log_path})\n"
            f"redis:  {kind} at {redact_url(self.redis.url)}"
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
