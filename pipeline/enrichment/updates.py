"""Credential state updates derived from events, and the merge rules they follow.

Every rule is monotonic, so a replay changes nothing and events may arrive in
any order (at-least-once delivery, several partitions, several workers):

- ``issued_at`` keeps the earliest issuance; that issuance also owns
  ``identity_id``, ``kind`` and ``issued_via`` (a later duplicate only fills
  fields that are empty);
- ``rotated_at`` keeps the latest rotation; ``revoked_at`` the earliest
  revocation (a late ``issued`` never un-revokes); ``last_used_at`` the max;
- ``task_id`` (an extension beyond docs/contracts/state.md, for SP-02) is written by the first
  ``issued`` that carries one and never changed or cleared afterwards;
- ``scopes`` / ``expires_at`` (the credential's current terms) come from the
  latest rotation that carried them, else from the issuance. A late
  ``issued`` never overwrites terms once a rotation is recorded, except to
  fill a field that is absent. Limitation: with no bookkeeping field beyond
  the contract, rotations *without* new terms that arrive out of order can
  leave the issuance's terms where a middle rotation's were expected.

The authoritative implementation is the Lua script in ``scripts.py`` (atomic in
Redis, safe with concurrent workers); :func:`merge_credential` is the same
rules in Python, used by :class:`MemoryEnricher` and kept equal to the script
by a differential test.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, Final, Literal, NamedTuple, TypeGuard

import orjson

OpCode = Literal["I", "R", "X", "U"]

ISSUED: Final = "credential.issued"
ROTATED: Final = "credential.rotated"
REVOKED: Final = "credential.revoked"
ACTION: Final = "action"

_CODES: Final[dict[str, OpCode]] = {ISSUED: "I", ROTATED: "R", REVOKED: "X"}


class CredentialOp(NamedTuple):
    """One update of ``nhi:credential:{credential_id}``; None = not given."""

    code: OpCode
    credential_id: str
    time: int
    identity_id: str | None = None
    kind: str | None = None
    issued_via: str | None = None
    scopes: str | None = None  # JSON list text
    expires_at: str | None = None  # decimal epoch ms; "" = never expires
    task_id: str | None = None  # issued only: the task the credential was issued for

    def encode(self, key_index: int) -> list[int | str]:
        """The op as the Lua script reads it: ``[code, key index, time]`` plus, for
        I/R, the six optional values ("" = not given, "=" + value = given)."""
        if self.code == "U" or self.code == "X":
            return [self.code, key_index, str(self.time)]
        return [
            self.code,
            key_index,
            str(self.time),
            *("" if v is None else "=" + v for v in self.optional()),
        ]

    def optional(self) -> tuple[str | None, ...]:
        return (
            self.identity_id,
            self.kind,
            self.issued_via,
            self.scopes,
            self.expires_at,
            self.task_id,
        )


def _is_time(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _scopes_json(value: Any) -> str | None:
    if not isinstance(value, list):
        return None
    return orjson.dumps([s for s in value if isinstance(s, str)]).decode()


def plan_credential_ops(events: Iterable[Mapping[str, Any]]) -> list[CredentialOp]:
    """The updates a batch implies: its credential events in order, then one
    ``last_used_at`` update per credential (the batch maximum) so an action in
    the same batch as its ``credential.issued`` finds the hash created."""
    ops: list[CredentialOp] = []
    used: dict[str, int] = {}
    last_used = used.get
    for event in events:
        credential_id = event.get("credential_id")
        if credential_id.__class__ is not str or not credential_id:
            continue
        event_time: Any = event.get("event_time")
        if event_time.__class__ is not int or event_time < 0:  # bool is not int here
            continue
        event_type: Any = event.get("event_type")
        if event_type == ACTION:
            if event_time > last_used(credential_id, -1):
                used[credential_id] = event_time
            continue
        code = _CODES.get(str(event_type))
        if code is None:
            continue
        expires = event.get("expires_at")
        if code == "I":
            ops.append(
                CredentialOp(
                    "I",
                    credential_id,
                    event_time,
                    identity_id=_text(event.get("identity_id")),
                    kind=_text(event.get("credential_kind")),
                    issued_via=_text(event.get("issued_via")),
                    scopes=_scopes_json(event.get("scopes")),
                    expires_at=str(expires) if _is_time(expires) else "",
                    task_id=_text(event.get("task_id")),
                )
            )
        elif code == "R":
            ops.append(
                CredentialOp(
                    "R",
                    credential_id,
                    event_time,
                    scopes=_scopes_json(event.get("scopes")),
                    expires_at=str(expires) if _is_time(expires) else None,
                )
            )
        else:
            ops.append(CredentialOp("X", credential_id, event_time))
    ops.extend(CredentialOp("U", cid, t) for cid, t in used.items())
    return ops


def _num(value: str | None) -> float | None:
    """Mirror of Lua ``tonumber`` for the values govpipe and sane systems write."""
    if value is None:
        return None
    try:
        return float(value.strip()) if value.strip() else None
    except ValueError:
        return None


def merge_credential(state: MutableMapping[str, str], op: CredentialOp) -> bool:
    """Apply ``op`` to a credential hash in place (the Lua rules); True if changed.

    ``U`` ops never create a hash: hostile input with random credential ids
    must not grow Redis, so only credential events create credential state.
    """
    before = dict(state)
    t = op.time
    ts = str(t)
    if op.code == "U":
        if not state:
            return False
        cur = _num(state.get("last_used_at"))
        if cur is None or t > cur:
            state["last_used_at"] = ts
    elif op.code == "X":
        cur = _num(state.get("revoked_at"))
        if cur is None or t < cur:
            state["revoked_at"] = ts
    elif op.code == "R":
        cur = _num(state.get("rotated_at"))
        latest = cur is None or t >= cur
        if cur is None or t > cur:
            state["rotated_at"] = ts
        if op.scopes is not None and (latest or "scopes" not in state):
            state["scopes"] = op.scopes
        if op.expires_at is not None and (latest or "expires_at" not in state):
            state["expires_at"] = op.expires_at
    else:
        cur = _num(state.get("issued_at"))
        earliest = cur is None or t <= cur
        own_terms = earliest and _num(state.get("rotated_at")) is None
        if cur is None or t < cur:
            state["issued_at"] = ts
        for name, value in (
            ("identity_id", op.identity_id),
            ("kind", op.kind),
            ("issued_via", op.issued_via),
        ):
            if value is not None and (earliest or not state.get(name)):
                state[name] = value
        if op.scopes is not None and (own_terms or "scopes" not in state):
            state["scopes"] = op.scopes
        if op.expires_at is not None and (own_terms or "expires_at" not in state):
            state["expires_at"] = op.expires_at
        if op.task_id is not None and not state.get("task_id"):
            state["task_id"] = op.task_id
    return state != before
