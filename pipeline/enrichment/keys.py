"""Redis key names and hash field names of the state contract (docs/contracts/state.md).

Field tuples are ordered: the Lua read script returns values in this order, so
parsing is positional and never looks at field names at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: The contract's prefix; tests and side-by-side deployments use their own.
DEFAULT_PREFIX: Final = "nhi:"

IDENTITY_FIELDS: Final = (
    "kind",
    "owner",
    "team",
    "environment",
    "risk_tier",
    "allowed_scopes",
    "status",
    # Optional (docs/contracts/state.md): how much autonomy the identity has; absent or
    # unreadable = DEFAULT_MODE, the strictest standard.
    "mode",
)

#: The values of an identity's ``mode``, least autonomous first.
IDENTITY_MODES: Final = ("reporting", "assistant", "autonomous")
#: What an identity without a (readable) ``mode`` is held to: the strictest standard.
DEFAULT_MODE: Final = "autonomous"

CREDENTIAL_FIELDS: Final = (
    "identity_id",
    "kind",
    "issued_via",
    "scopes",
    "issued_at",
    "expires_at",
    "rotated_at",
    "revoked_at",
    "last_used_at",
    # Not in docs/contracts/state.md: an optional extension govpipe writes from a
    # ``credential.issued`` that carries ``task_id`` (first writer wins), so SP-02
    # can route a ``credential.revoked`` without ``task_id`` to its task.
    "task_id",
)

#: The registry marker ``{prefix}registry`` (an optional addition to the contract,
#: docs/contracts/state.md): written with the identities by every load, read by the
#: worker to tell "identity unknown" from "registry not loaded".
REGISTRY_MARKER_FIELDS: Final = (
    "loaded_at",  # epoch ms of the last load
    "identities",  # identities that load wrote
    "generation",  # loads so far (HINCRBY): a change means the registry was reloaded
)

#: Credential fields holding epoch milliseconds as decimal strings ("" = none).
CREDENTIAL_TIME_FIELDS: Final = (
    "issued_at",
    "expires_at",
    "rotated_at",
    "revoked_at",
    "last_used_at",
)


@dataclass(frozen=True, slots=True)
class KeySpace:
    """Builds ``{prefix}identity:{id}``, ``{prefix}credential:{id}`` and ``{prefix}registry``."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not self.prefix or any(c in self.prefix for c in "*?[]"):
            # A glob character in the prefix would make SCAN patterns match other keys.
            raise ValueError("key prefix must be non-empty and free of glob characters")

    @property
    def identity_prefix(self) -> str:
        return f"{self.prefix}identity:"

    @property
    def credential_prefix(self) -> str:
        return f"{self.prefix}credential:"

    @property
    def registry(self) -> str:
        """The registry marker key (``{prefix}registry``)."""
        return f"{self.prefix}registry"

    def identity(self, identity_id: str) -> str:
        return f"{self.prefix}identity:{identity_id}"

    def credential(self, credential_id: str) -> str:
        return f"{self.prefix}credential:{credential_id}"
