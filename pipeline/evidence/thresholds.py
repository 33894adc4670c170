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
_PREFIX: Final = "max_lifetime_"
_SUFFIX: Final = "_s"


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
        sp01, sp02, rs01 = (_spec(specs, i) for i in ("SP-01", "SP-02", "RS-01"))
        lifetimes = {
            name[len(_PREFIX) : -len(_SUFFIX)]: int(value * 1000)
            for name, value in sp01.thresholds.items()
            if name.startswith(_PREFIX) and name.endswith(_SUFFIX)
        }
        return cls(
            max_lifetime_ms=lifetimes,
            revocation_grace_ms=int(sp02.thresholds["grace_s"] * 1000),
            min_review_ms=int(rs01.thresholds["min_review_s"] * 1000),
            min_review_high_risk_ms=int(rs01.thresholds["min_review_high_risk_s"] * 1000),
        )

    @classmethod
    def defaults(cls) -> EvidenceThresholds:
        """The built-in detectors' defaults (no policy): tests and offline views."""
        return cls.from_specs({})


def _spec(specs: Mapping[str, Any], detector_id: str) -> Any:
    found = specs.get(detector_id)
    if found is not None:
        return found
    from pipeline.detectors.registry import all_detectors

    for det in all_detectors():
        if det.spec.id == detector_id:
            return det.spec
    raise KeyError(f"no detector {detector_id}: the dossier needs its thresholds")
