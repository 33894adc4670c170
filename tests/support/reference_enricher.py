"""A pure-Python reference of the enrichment rules, never used by the product.

The Redis Lua scripts are checked against it in tests: it applies the same
merge rules (``merge_credential``) and builds the same views.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from pipeline.enrichment.cache import CacheStats
from pipeline.enrichment.keys import CREDENTIAL_FIELDS, IDENTITY_FIELDS, KeySpace
from pipeline.enrichment.updates import merge_credential, plan_credential_ops
from pipeline.enrichment.views import (
    UNKNOWN_CREDENTIAL,
    UNKNOWN_IDENTITY,
    GarbageReport,
    credential_view,
    identity_view,
)


class MemoryEnricher:
    """Identity and credential hashes held in dicts (raw strings, as in Redis)."""

    def __init__(
        self,
        identities: Mapping[str, Mapping[str, Any]] | None = None,
        credentials: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.keys = KeySpace()
        self.identities: dict[str, dict[str, str]] = {}
        self.credentials: dict[str, dict[str, str]] = {
            cid: dict(fields) for cid, fields in (credentials or {}).items()
        }
        self.garbage = GarbageReport()
        for identity_id, fields in (identities or {}).items():
            self.set_identity(identity_id, fields)

    def set_identity(self, identity_id: str, fields: Mapping[str, Any]) -> None:
        """Store an identity; ``allowed_scopes`` may be given as a list."""
        raw = {k: v for k, v in fields.items() if v is not None}
        if isinstance(raw.get("allowed_scopes"), list):
            raw["allowed_scopes"] = orjson.dumps(raw["allowed_scopes"]).decode()
        self.identities[identity_id] = {k: str(v) for k, v in raw.items()}

    async def apply(self, events: Iterable[Mapping[str, Any]]) -> None:
        for op in plan_credential_ops(events):
            state = self.credentials.get(op.credential_id)
            if state is None:
                state = {}
                if merge_credential(state, op):
                    self.credentials[op.credential_id] = state
            else:
                merge_credential(state, op)

    async def enrich(self, events: list[dict[str, Any]]) -> None:
        identities: dict[Any, Any] = {None: None}
        credentials: dict[Any, Any] = {None: None}
        for event in events:
            identity_id: Any = event.get("identity_id")
            if identity_id not in identities:
                raw = self.identities.get(identity_id)
                identities[identity_id] = (
                    UNKNOWN_IDENTITY
                    if raw is None
                    else identity_view(
                        self.keys.identity(identity_id),
                        [raw.get(f) for f in IDENTITY_FIELDS],
                        self.garbage,
                    )
                )
            credential_id: Any = event.get("credential_id")
            if credential_id not in credentials:
                state = self.credentials.get(credential_id)
                credentials[credential_id] = (
                    UNKNOWN_CREDENTIAL
                    if state is None
                    else credential_view(
                        self.keys.credential(credential_id),
                        [state.get(f) for f in CREDENTIAL_FIELDS],
                        self.garbage,
                    )
                )
            event["identity"] = identities[identity_id]
            event["credential"] = credentials[credential_id]

    def cache_stats(self) -> CacheStats:
        return CacheStats(0, 0, 0, 0)

    async def close(self) -> None:
        return None
