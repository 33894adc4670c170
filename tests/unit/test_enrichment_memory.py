"""The reference (pure Python) enricher that the Lua scripts are checked against."""

from __future__ import annotations

import asyncio
from typing import Any

from pipeline.enrichment import UNKNOWN_CREDENTIAL, UNKNOWN_IDENTITY, Enricher
from tests.support.reference_enricher import MemoryEnricher

T = 1_700_000_000_000


def action(t: int, identity_id: str, credential_id: str) -> dict[str, Any]:
    return {
        "event_type": "action",
        "event_time": t,
        "identity_id": identity_id,
        "credential_id": credential_id,
    }


def test_apply_then_enrich_sees_the_same_batch() -> None:
    enricher = MemoryEnricher(
        identities={"agent-1": {"kind": "ai_agent", "allowed_scopes": ["crm.read"], "owner": None}}
    )
    checked: Enricher = enricher
    batch: list[dict[str, Any]] = [
        {
            "event_type": "credential.issued",
            "event_time": T,
            "identity_id": "agent-1",
            "credential_id": "c1",
            "credential_kind": "jit_token",
            "issued_via": "jit",
            "scopes": ["crm.read"],
            "expires_at": T + 60_000,
        },
        action(T + 5, "agent-1", "c1"),
        action(T + 6, "ghost", "c9"),
        {"event_type": "task.started", "event_time": T, "identity_id": None, "credential_id": None},
    ]

    async def go() -> None:
        await checked.apply(batch)
        await checked.enrich(batch)
        await checked.close()

    asyncio.run(go())
    first, second, third, fourth = batch
    assert first["identity"] is second["identity"]  # one shared view per identity
    assert first["identity"]["allowed_scopes"] == ["crm.read"]
    assert first["identity"]["owner"] is None
    assert second["credential"]["lifetime_ms"] == 60_000
    assert second["credential"]["last_used_at"] == T + 5
    assert third["identity"] is UNKNOWN_IDENTITY and third["credential"] is UNKNOWN_CREDENTIAL
    assert fourth["identity"] is None and fourth["credential"] is None
    assert "c9" not in enricher.credentials  # actions never create credential state
    assert enricher.cache_stats().lookups == 0
