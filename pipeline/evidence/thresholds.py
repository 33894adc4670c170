"""The thresholds a dossier judges with, read from the detectors' policy-effective specs.

One source of truth: SP-01 says how long a credential may live per identity kind,
SP-02 how long after completion a task's credentials may stay live, RS-01 how long a
review must take. A dossier never holds its own copy of those numbers; the caller
builds ``EvidenceThresholds.from_specs(engine.specs)`` once, so a policy override of
a detector changes the dossier's verdicts too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

#: The identity-kind key of SP-01's fallback lifetime (humans and unknown kinds).
OTHER_KIND: Final = "other"


@dataclass(frozen=True, slots=True)
class EvidenceThresholds:
    """Milliseconds. ``max_lifetime_ms`` per identity kind, ``other`` for the rest."""

    max_lifetime_ms: Mapping[str, int]
    revocation_grace_ms: int
    min_review_ms: int
    min_review_high_risk_ms: int

    def max_lifetime_for(self, kind: str | None) -> int | None:
        """The longest lifetime still ephemeral for an identity ``kind``."""
        if kind and kind in self.max_lifetime_ms:
            return self.max_lifetime_ms[kind]
        return self.max_lifetime_ms.get(OTHER_KIND)

    @classmethod
    def from_specs(cls, specs: Mapping[str, Any]) -> EvidenceThresholds:
        """From ``{detector id: DetectorSpec}`` (``DetectionEngine.specs``: policy merged).

        A detector missing from ``specs`` falls back to its built-in spec (the
        detector module's own defaults), never to a number written here.
        """
        from pipeline.detectors.kinds import provided

        return cls(
            max_lifetime_ms=provided(specs, "credential_max_lifetime_ms"),
            revocation_grace_ms=provided(specs, "revocation_grace_ms"),
            min_review_ms=provided(specs, "min_review_ms"),
            min_review_high_risk_ms=provided(specs, "min_review_high_risk_ms"),
        )

    @classmethod
    def defaults(cls) -> EvidenceThresholds:
        """The built-in detectors' defaults (no policy): tests and offline views."""
        return cls.from_specs({})
