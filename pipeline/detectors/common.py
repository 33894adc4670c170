"""Small helpers shared by detector modules: finding context, scopes, enrichment access.

Kept here so every detector reports the same context fields and matches scopes the
same way; an alert's subject fields then mean the same thing across detectors.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from fnmatch import translate
from functools import lru_cache
from typing import Any

from pipeline.detectors.base import Event

#: The alert's subject fields (docs/contracts/alerts.md) a finding's context may carry.
CONTEXT_FIELDS = (
    "identity_id",
    "on_behalf_of",
    "credential_id",
    "approval_id",
    "approver",
    "task_id",
    "platform",
    "environment",
)


#: The events an identity performs itself (revocations are not: revoking a retired
#: identity's credentials is cleanup, not activity).
SELF_ACTIVITY = frozenset(
    {
        "action",
        "credential.issued",
        "credential.rotated",
        "delegation",
        "task.started",
        "task.completed",
        "approval.requested",
    }
)


def event_context(event: Event, **extra: Any) -> dict[str, Any]:
    """The alert subject fields found on ``event`` (non-empty only), plus ``extra``."""
    ctx = {name: event[name] for name in CONTEXT_FIELDS if event.get(name)}
    identity = identity_of(event)
    team = identity.get("team")
    if team:
        ctx["team"] = team  # the registry team, for the alert's optional ``team`` field
    mode = identity.get("mode")
    if mode:
        ctx["mode"] = mode  # the registry mode: per-mode policy, the alert's ``mode``
    ctx.update({k: v for k, v in extra.items() if v is not None})
    return ctx


def identity_of(event: Event) -> Mapping[str, Any]:
    """The identity enrichment, or {} when absent (no identity_id)."""
    value = event.get("identity")
    return value if isinstance(value, Mapping) else {}


def credential_of(event: Event) -> Mapping[str, Any]:
    """The credential enrichment, or {} when absent (no credential_id)."""
    value = event.get("credential")
    return value if isinstance(value, Mapping) else {}


def issuance_known(cred: Mapping[str, Any]) -> bool:
    """Does the registry know how the credential was issued?

    A revocation or rotation processed before the issuance (events of one
    credential on different input partitions: docs/contracts/input.md lets producers key as
    they like) leaves a hash with lifecycle marks only; its missing expiry and
    empty scopes are not facts about the credential.
    """
    return bool(cred.get("known")) and any(
        cred.get(field) is not None for field in ("issued_at", "kind", "issued_via")
    )


@lru_cache(maxsize=4096)
def _pattern(glob: str) -> re.Pattern[str]:
    return re.compile(translate(glob.lower()))


def glob_match(value: str | None, patterns: Iterable[str]) -> str | None:
    """The first pattern (fnmatch glob, case-insensitive) matching ``value``, else None."""
    if not value:
        return None
    text = value.lower()
    for pattern in patterns:
        if _pattern(pattern).match(text):
            return pattern
    return None


def scope_covers(granted: str, used: str) -> bool:
    """Does a granted scope cover a used one? Equal, or the grant is a glob (``crm.*``)."""
    if granted == used:
        return True
    return any(c in granted for c in "*?[") and glob_match(used, (granted,)) is not None


def covered(used: str, granted: Iterable[str]) -> bool:
    return any(scope_covers(g, used) for g in granted)


def seconds(ms: int | float | None) -> int | float | None:
    """Milliseconds as seconds for evidence facts (whole seconds stay ints)."""
    if ms is None:
        return None
    return int(ms) // 1000 if int(ms) == ms and int(ms) % 1000 == 0 else ms / 1000


def capped(values: Iterable[str], limit: int = 20) -> list[str]:
    """A short sorted list for evidence facts (ids only, never raw attribute values)."""
    return sorted(values)[:limit]
