"""Local stand-ins for production services: the Tansu broker and a Redis for demo and tests."""

from __future__ import annotations

from pipeline.embedded.broker import EmbeddedBroker
from pipeline.embedded.redis import LocalRedis
from pipeline.embedded.services import EmbeddedServices

__all__ = ["EmbeddedBroker", "EmbeddedServices", "LocalRedis"]
