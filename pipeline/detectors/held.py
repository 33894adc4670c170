"""The compact form of an event held for the windowed detectors (``state.HELD``).

A held event is rewritten to the changelog at every unit until the watermark passes
it, and most of a stage-1 event is nulls: the contract's fields that do not apply to
its type, and the empty fields of its ``identity`` and ``credential`` enrichment.
``pack`` drops them (and a credential's ``lifetime_ms`` when it is the difference of
its own times, as ``enrichment/views.credential_view`` computes it); ``unpack`` puts
them back, so the detectors, alerts and dossiers see the same dict, key order
included (orjson writes alerts and dossiers in insertion order).

Only the layouts stage 1 produces are packed, checked key by key: the contract's
fields in ``EVENT_FIELDS`` order, then ``_secrets`` if the event was redacted, its
``identity`` and ``credential`` (each None or a view in the layout of
``enrichment/views.py``) and ``REGISTRY_GAP`` if marked. Anything else (a view
from before ``mode``, a hand-made test event) is held as it is. A packed event
carries ``PACKED`` (which views were packed); an event without it is whole, as
every held event was before this form existed, and ``unpack`` returns it as it is.
``event_time`` is always kept: the engine and ``next_deadline`` read it from the
held form.
"""

from __future__ import annotations

from typing import Any, Final

from pipeline.detectors.base import REGISTRY_GAP
from pipeline.enrichment.keys import CREDENTIAL_FIELDS, IDENTITY_FIELDS
from pipeline.records import EVENT_FIELDS

Event = dict[str, Any]
#: A held event: packed (``PACKED`` in it) or whole.
Held = dict[str, Any]

#: Marks a packed event; its value says which views were packed (the bits below).
#: Never a key of a stage-1 event (``AgentEvent`` ignores unknown fields).
PACKED: Final = "~"
IDENTITY_PACKED: Final = 1
CREDENTIAL_PACKED: Final = 2
#: the credential's ``lifetime_ms`` was dropped: ``expires_at - issued_at``
LIFETIME_DERIVED: Final = 4

SECRETS: Final = "_secrets"
#: The views' layouts (``enrichment/views.py``: ``identity_view``, ``credential_view``
#: and their ``UNKNOWN_*``); tests/unit/detectors/test_held.py keeps them in step.
IDENTITY_VIEW: Final = ("known", *IDENTITY_FIELDS, "owner_status")
CREDENTIAL_VIEW: Final = ("known", *CREDENTIAL_FIELDS, "lifetime_ms")

_N: Final = len(EVENT_FIELDS)
#: What may follow the contract's fields in a stage-1 event.
_TAILS: Final = frozenset(
    {
        ("identity", "credential"),
        (SECRETS, "identity", "credential"),
        ("identity", "credential", REGISTRY_GAP),
        (SECRETS, "identity", "credential", REGISTRY_GAP),
    }
)


def _dense(mapping: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if v is not None}


def pack(event: Event) -> Held:
    """``event`` without its nulls (a new dict; ``event`` is not changed), or
    ``event`` itself if it is not in a layout stage 1 produces."""
    keys = tuple(event)
    if (
        keys[:_N] != EVENT_FIELDS
        or keys[_N:] not in _TAILS
        or type(event["event_time"]) is not int
        or event.get(SECRETS, ()) is None
        or event.get(REGISTRY_GAP, ()) is None
    ):
        return event
    flags = 0
    out = _dense(event)
    identity = out.get("identity")
    if type(identity) is dict and tuple(identity) == IDENTITY_VIEW:
        out["identity"] = _dense(identity)
        flags |= IDENTITY_PACKED
    credential = out.get("credential")
    if type(credential) is dict and tuple(credential) == CREDENTIAL_VIEW:
        dense = out["credential"] = _dense(credential)
        flags |= CREDENTIAL_PACKED
        lifetime, issued, expires = (
            dense.get(k) for k in ("lifetime_ms", "issued_at", "expires_at")
        )
        if (
            type(lifetime) is int
            and type(issued) is int
            and type(expires) is int
            and lifetime == expires - issued
        ):
            del dense["lifetime_ms"]
            flags |= LIFETIME_DERIVED
    out[PACKED] = flags
    return out


def unpack(held: Held) -> Event:
    """The event ``pack`` was given; a whole event (no ``PACKED``) as it is."""
    flags = held.get(PACKED)
    if flags is None:
        return held
    get = held.get
    event = {k: get(k) for k in EVENT_FIELDS}
    if SECRETS in held:
        event[SECRETS] = held[SECRETS]
    identity: Any = get("identity")
    if flags & IDENTITY_PACKED:
        identity = {k: identity.get(k) for k in IDENTITY_VIEW}
    event["identity"] = identity
    credential: Any = get("credential")
    if flags & CREDENTIAL_PACKED:
        credential = {k: credential.get(k) for k in CREDENTIAL_VIEW}
        if flags & LIFETIME_DERIVED:
            credential["lifetime_ms"] = credential["expires_at"] - credential["issued_at"]
    event["credential"] = credential
    if REGISTRY_GAP in held:
        event[REGISTRY_GAP] = held[REGISTRY_GAP]
    return event
