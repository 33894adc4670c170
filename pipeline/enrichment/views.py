"""Turn raw registry hash values into the read-only dicts added to events.

Hashes are written by external IAM / inventory systems as well as by govpipe,
so every value is untrusted: unreadable JSON lists become empty lists,
non-numeric times become None, and each such field is reported once per key
(without its value, which may hold anything). Garbage never fails a batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Final

import orjson

from pipeline.enrichment.keys import (
    CREDENTIAL_FIELDS,
    DEFAULT_MODE,
    IDENTITY_FIELDS,
    IDENTITY_MODES,
)

log = logging.getLogger(__name__)

#: Raw values of one hash in field order; False (JSON) / None = field absent.
RawValues = Sequence[str | bool | None]

#: The enrichment of an identity the registry does not know (AT-01's input). Shared.
UNKNOWN_IDENTITY: Final[dict[str, Any]] = {
    "known": False,
    **dict.fromkeys(IDENTITY_FIELDS),
    "owner_status": None,
}

#: The enrichment of a credential govpipe has no state for. Shared.
UNKNOWN_CREDENTIAL: Final[dict[str, Any]] = {
    "known": False,
    **dict.fromkeys(CREDENTIAL_FIELDS),
    "lifetime_ms": None,
}


class GarbageReport:
    """Logs each unreadable (key, field) once at WARNING; bounded memory."""

    def __init__(self, max_remembered: int = 10_000) -> None:
        self.max_remembered = max_remembered
        self.count = 0
        self._seen: set[tuple[str, str]] = set()

    def __call__(self, key: str, field: str | None, expected: str) -> None:
        """Count one unreadable value; ``field`` None means the whole key."""
        self.count += 1
        marker = (key, field or "")
        if marker in self._seen:
            return
        if len(self._seen) >= self.max_remembered:
            self._seen.clear()
        self._seen.add(marker)
        if field is None:
            log.warning("registry key %s is not %s; treated as absent", key, expected)
        else:
            log.warning(
                "registry field %s of %s is not %s; treated as absent (value not logged)",
                field,
                key,
                expected,
            )


def _text(value: str | bool | None) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_epoch_ms(
    value: str | bool | None, key: str, field: str, report: GarbageReport
) -> int | None:
    """Decimal epoch milliseconds; "" or absent is None, anything else is garbage."""
    if not isinstance(value, str) or not value:
        return None
    if value.isdecimal() and value.isascii():
        return int(value)
    text = value.strip()
    if text.isdecimal() and text.isascii():
        return int(text)
    report(key, field, "epoch milliseconds")
    return None


def parse_scope_list(
    value: str | bool | None, key: str, field: str, report: GarbageReport
) -> list[str]:
    """A JSON list of strings; "" or absent is [], garbage is [] (non-strings dropped)."""
    if not isinstance(value, str) or not value:
        return []
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        report(key, field, "a JSON list")
        return []
    if not isinstance(parsed, list):
        report(key, field, "a JSON list")
        return []
    scopes = [s for s in parsed if isinstance(s, str)]
    if len(scopes) != len(parsed):
        report(key, field, "a JSON list of strings")
    return scopes


def parse_mode(value: str | bool | None, key: str, report: GarbageReport) -> str:
    """The identity's ``mode`` (case and surrounding blanks ignored); absent or "" is
    ``DEFAULT_MODE``, and so is anything else, reported as garbage: an unreadable mode
    must hold the identity to the strictest standard, never a laxer one."""
    if not isinstance(value, str) or not value:
        return DEFAULT_MODE
    if value in IDENTITY_MODES:
        return value
    text = value.strip().lower()
    if text in IDENTITY_MODES:
        return text
    report(key, "mode", "one of " + ", ".join(IDENTITY_MODES))
    return DEFAULT_MODE


def identity_view(
    key: str, values: RawValues, report: GarbageReport, owner_status: str | bool | None = None
) -> dict[str, Any]:
    """``values`` in ``IDENTITY_FIELDS`` order for a hash that exists.

    ``owner_status``: the ``status`` of the owner's own identity hash (None when
    the identity has no owner or the owner is not in the registry; SP-08). ``mode``
    is always set for a known identity (``parse_mode``); an unknown one has None.
    """
    kind, owner, team, environment, risk_tier, allowed_scopes, status = values[:7]
    mode = values[7] if len(values) > 7 else None
    return {
        "known": True,
        "kind": _text(kind),
        "owner": _text(owner),
        "team": _text(team),
        "environment": _text(environment),
        "risk_tier": _text(risk_tier),
        "allowed_scopes": parse_scope_list(allowed_scopes, key, "allowed_scopes", report),
        "status": _text(status),
        "mode": parse_mode(mode, key, report),
        "owner_status": _text(owner_status) if _text(owner) else None,
    }


def credential_view(key: str, values: RawValues, report: GarbageReport) -> dict[str, Any]:
    """``values`` in ``CREDENTIAL_FIELDS`` order for a hash that exists."""
    identity_id, kind, issued_via, scopes = values[:4]
    task_id = values[9] if len(values) > 9 else None
    issued_at = parse_epoch_ms(values[4], key, "issued_at", report)
    expires_at = parse_epoch_ms(values[5], key, "expires_at", report)
    rotated_at = parse_epoch_ms(values[6], key, "rotated_at", report)
    revoked_at = parse_epoch_ms(values[7], key, "revoked_at", report)
    last_used_at = parse_epoch_ms(values[8], key, "last_used_at", report)
    return {
        "known": True,
        "identity_id": _text(identity_id),
        "kind": _text(kind),
        "issued_via": _text(issued_via),
        "scopes": parse_scope_list(scopes, key, "scopes", report),
        "issued_at": issued_at,
        "expires_at": expires_at,
        "rotated_at": rotated_at,
        "revoked_at": revoked_at,
        "last_used_at": last_used_at,
        "task_id": _text(task_id),
        "lifetime_ms": (
            expires_at - issued_at if expires_at is not None and issued_at is not None else None
        ),
    }
