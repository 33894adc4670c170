"""The identity registry file (``govpipe identities load``) and its Redis hashes.

File format (YAML or JSON), as the simulator writes ``samples/identities.yaml``::

    identities:
      - identity_id: agent-crm-01
        kind: ai_agent            # ai_agent | service_account | workload | human
        owner: alice@example.com
        team: sales-ops
        environment: prod
        risk_tier: high           # low | medium | high | critical
        allowed_scopes: [crm.read, crm.records.export]
        status: active            # active | disabled | offboarded
        mode: assistant           # reporting | assistant | autonomous (absent = autonomous)

Each entry becomes ``{prefix}identity:{identity_id}`` (docs/contracts/state.md) with
``allowed_scopes`` as a JSON list; absent optional fields are not stored; the
registry marker ``{prefix}registry`` says when the last load ran and how many it
wrote (``pipeline/enrichment/readiness.py`` reads it in the worker). The
file is validated as a whole first: one bad entry means nothing is written
(unless the caller skips invalid entries), because a half-loaded registry
would turn good identities into AT-01 "unknown identity" findings.
Unknown keys in an entry are errors: a typo such as ``alowed_scopes`` must not
silently load an identity with no allowed scopes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import orjson
import redis
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from pipeline.enrichment.keys import KeySpace
from pipeline.errors import ConfigError
from pipeline.records import MAX_ID, MAX_SCOPES, Id, Scope

IdentityKind = Literal["ai_agent", "service_account", "workload", "human"]
RiskTier = Literal["low", "medium", "high", "critical"]
IdentityStatus = Literal["active", "disabled", "offboarded"]
#: ``keys.IDENTITY_MODES``; absent = ``keys.DEFAULT_MODE`` (the strictest), not stored.
IdentityMode = Literal["reporting", "assistant", "autonomous"]


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


Name = Annotated[str, Field(min_length=1, max_length=MAX_ID)]


class IdentityEntry(BaseModel):
    """One registry entry; validated because the file comes from people and scripts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    identity_id: Id
    kind: Annotated[IdentityKind, BeforeValidator(_lower)]
    owner: Name | None = None
    team: Name | None = None
    environment: Name | None = None
    risk_tier: Annotated[RiskTier, BeforeValidator(_lower)] | None = None
    allowed_scopes: Annotated[list[Scope], Field(max_length=MAX_SCOPES)] = Field(
        default_factory=list
    )
    status: Annotated[IdentityStatus, BeforeValidator(_lower)] = "active"
    mode: Annotated[IdentityMode, BeforeValidator(_lower)] | None = None

    def to_hash(self) -> dict[str, str]:
        """The Redis hash: strings only, JSON list for scopes, None fields left out."""
        fields = {
            "kind": self.kind,
            "owner": self.owner,
            "team": self.team,
            "environment": self.environment,
            "risk_tier": self.risk_tier,
            "allowed_scopes": orjson.dumps(self.allowed_scopes).decode(),
            "status": self.status,
            "mode": self.mode,
        }
        return {k: v for k, v in fields.items() if v is not None}


class Problem(NamedTuple):
    """A bad entry: its position in the file (None = the file itself) and why."""

    entry_index: int | None
    identity_id: str | None
    reason: str

    def __str__(self) -> str:
        if self.entry_index is None:
            return self.reason
        who = f" ({self.identity_id})" if self.identity_id else ""
        return f"identities[{self.entry_index}]{who}: {self.reason}"


def _reasons(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where}: {err['msg']}" if where else err["msg"])
    return "; ".join(parts)


def read_registry_file(path: Path) -> Any:
    """Parse the file (JSON for ``.json``, YAML otherwise); ConfigError if unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
        raise ConfigError(f"{path} is not valid {kind}: {first}") from None


def parse_registry(document: Any) -> tuple[list[IdentityEntry], list[Problem]]:
    """Validate every entry; return the good ones and one Problem per bad one."""
    if isinstance(document, list):
        raw_entries: Any = document
    elif isinstance(document, dict) and set(document) <= {"identities"}:
        raw_entries = document.get("identities")
    else:
        return [], [Problem(None, None, "expected a mapping with one key, 'identities'")]
    if not isinstance(raw_entries, list):
        return [], [Problem(None, None, "'identities' must be a list of entries")]
    entries: list[IdentityEntry] = []
    problems: list[Problem] = []
    first_seen: dict[str, int] = {}
    for index, raw in enumerate(raw_entries):
        raw_id = raw.get("identity_id") if isinstance(raw, dict) else None
        shown_id = raw_id if isinstance(raw_id, str) else None
        if not isinstance(raw, dict):
            problems.append(Problem(index, None, "an entry must be a mapping"))
            continue
        try:
            entry = IdentityEntry.model_validate(raw)
        except ValidationError as exc:
            problems.append(Problem(index, shown_id, _reasons(exc)))
            continue
        if entry.identity_id in first_seen:
            problems.append(
                Problem(
                    index,
                    entry.identity_id,
                    f"duplicate identity_id (first at identities[{first_seen[entry.identity_id]}])",
                )
            )
            continue
        first_seen[entry.identity_id] = index
        entries.append(entry)
    return entries, problems


def _scan(client: redis.Redis, pattern: str) -> Iterator[str]:
    for key in client.scan_iter(match=pattern, count=1000):
        yield key.decode() if isinstance(key, bytes) else str(key)


def write_identities(
    client: redis.Redis,
    keys: KeySpace,
    entries: list[IdentityEntry],
    *,
    replace: bool = False,
    now_ms: int | None = None,
) -> tuple[int, int]:
    """Write all entries in one MULTI/EXEC (readers never see half a registry).

    Each listed identity's hash is replaced whole. With ``replace``, identities
    absent from the file are deleted too. The same transaction writes the registry
    marker ``{prefix}registry`` (``loaded_at``, ``identities``, ``generation``), which
    workers read to tell a registry that lacks an identity from one that was never
    loaded (or was lost with a Redis restart). Returns (written, deleted).
    """
    wanted = {keys.identity(e.identity_id) for e in entries}
    stale: list[str] = []
    if replace:
        stale = [k for k in _scan(client, keys.identity_prefix + "*") if k not in wanted]
    pipe = client.pipeline(transaction=True)
    for entry in entries:
        key = keys.identity(entry.identity_id)
        pipe.delete(key)
        pipe.hset(key, mapping=entry.to_hash())  # type: ignore[arg-type]
    for i in range(0, len(stale), 1000):
        pipe.delete(*stale[i : i + 1000])
    loaded_at = int(time.time() * 1000) if now_ms is None else now_ms
    pipe.hset(keys.registry, mapping={"loaded_at": loaded_at, "identities": len(entries)})
    pipe.hincrby(keys.registry, "generation", 1)
    pipe.execute()
    return len(entries), len(stale)


def read_hash(client: redis.Redis, key: str) -> dict[str, str] | None:
    """A hash as text (undecodable bytes replaced), or None when the key is absent."""
    raw: Any = client.hgetall(key)
    if not raw:
        return None
    return {_text(k): _text(v) for k, v in raw.items()}


def credentials_of(client: redis.Redis, keys: KeySpace, identity_id: str) -> list[str]:
    """Credential ids whose hash names ``identity_id`` (a SCAN: slow on big registries)."""
    found: list[str] = []
    batch: list[str] = []

    def flush() -> None:
        values: Any = client.pipeline(transaction=False)
        for key in batch:
            values.hget(key, "identity_id")
        for key, owner in zip(batch, values.execute(), strict=True):
            if owner is not None and _text(owner) == identity_id:
                found.append(key[len(keys.credential_prefix) :])
        batch.clear()

    for key in _scan(client, keys.credential_prefix + "*"):
        batch.append(key)
        if len(batch) >= 1000:
            flush()
    if batch:
        flush()
    return sorted(found)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
