"""Identity and credential state (docs/contracts/state.md): enrichment reads and credential updates.

The worker holds one :class:`Enricher` and, per batch, calls ``apply`` then
``enrich`` inside :func:`retry_forever` (both are idempotent). Events gain
``identity`` and ``credential``: shared, read-only dicts (see ``views.py``).
"""

from __future__ import annotations

from typing import Any, Protocol

from pipeline.enrichment.cache import CacheStats, TTLCache
from pipeline.enrichment.keys import DEFAULT_PREFIX, KeySpace
from pipeline.enrichment.redis_state import RedisEnricher
from pipeline.enrichment.updates import CredentialOp, merge_credential, plan_credential_ops
from pipeline.enrichment.views import UNKNOWN_CREDENTIAL, UNKNOWN_IDENTITY
from pipeline.retry import retry_forever


class Enricher(Protocol):
    """The seam the worker depends on (Redis in production, memory in tests)."""

    async def apply(self, events: list[dict[str, Any]]) -> None: ...

    async def enrich(self, events: list[dict[str, Any]]) -> None: ...

    def cache_stats(self) -> CacheStats: ...

    async def close(self) -> None: ...


__all__ = [
    "DEFAULT_PREFIX",
    "UNKNOWN_CREDENTIAL",
    "UNKNOWN_IDENTITY",
    "CacheStats",
    "CredentialOp",
    "Enricher",
    "KeySpace",
    "RedisEnricher",
    "TTLCache",
    "merge_credential",
    "plan_credential_ops",
    "retry_forever",
]
