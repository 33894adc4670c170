"""Enriched-event factories for the metrics tests (identity / credential views inline)."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pipeline.detectors.kinds import provided
from pipeline.metrics import deltas

BASE = 1_764_000_000_000 - 1_764_000_000_000 % 3_600_000  # an hour boundary
MIN = 60_000
HOUR = 3_600_000
#: The built-in detectors' max credential lifetimes (SP-01's defaults), per identity kind.
MAX_TTL_MS: Mapping[str, int] = provided({}, "credential_max_lifetime_ms")


def action_deltas(
    events: Iterable[Mapping[str, Any]],
    window_sizes: Sequence[int],
    *,
    max_ttl_ms: Mapping[str, int] = MAX_TTL_MS,
) -> list[deltas.Delta]:
    """``deltas.action_deltas`` with the built-in lifetimes unless a test names its own."""
    return deltas.action_deltas(events, window_sizes, max_ttl_ms=max_ttl_ms)


IDENTITIES: dict[str, dict[str, Any]] = {
    "agent-a": {"known": True, "kind": "ai_agent", "team": "sales", "mode": "reporting"},
    "agent-b": {"known": True, "kind": "workload", "team": "eng", "mode": "assistant"},
    # a view without ``mode`` (enriched before modes existed): a known identity is autonomous
    "svc-c": {"known": True, "kind": "service_account", "team": None},
    "ghost": {"known": False, "kind": None, "team": None},
}


def action(
    t: int,
    identity_id: str | None = "agent-a",
    *,
    platform: str = "crm",
    decision: str | None = "allow",
    credential_id: str | None = "cred-1",
    issued_via: str | None = "jit",
    lifetime_ms: int | None = 10 * MIN,
    credential_known: bool = True,
    latency_ms: int | None = 100,
    identity: dict[str, Any] | None = None,
) -> dict[str, Any]:
    if identity is None and identity_id is not None:
        identity = IDENTITIES.get(identity_id, {"known": False, "kind": None, "team": None})
    credential = None
    if credential_id is not None:
        credential = (
            {"known": True, "issued_via": issued_via, "lifetime_ms": lifetime_ms}
            if credential_known
            else {"known": False, "issued_via": None, "lifetime_ms": None}
        )
    return {
        "event_id": f"e-{t}-{identity_id}",
        "event_type": "action",
        "event_time": t,
        "platform": platform,
        "identity_id": identity_id,
        "policy_decision": decision,
        "credential_id": credential_id,
        "latency_ms": latency_ms,
        "identity": identity,
        "credential": credential,
    }


def random_actions(n: int, seed: int = 7, span_ms: int = 10 * MIN) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ident = rng.choice([*IDENTITIES, None])
        out.append(
            action(
                BASE + rng.randrange(span_ms),
                ident,
                platform=rng.choice(["crm", "code", "fin"]),
                decision=rng.choice(["allow", "allow", "deny", None]),
                credential_id=rng.choice([f"cred-{i % 7}", None]),
                issued_via=rng.choice(["jit", "static", None]),
                lifetime_ms=rng.choice([None, 30 * MIN, 2 * HOUR, 30 * HOUR, 100 * 24 * HOUR]),
                credential_known=rng.random() < 0.8,
                latency_ms=rng.choice([None, 0, *range(1, 5000, 37)]),
            )
        )
    return out
