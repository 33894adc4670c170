"""AT-01 unattributable action: an action nobody can be held to account for.

Either the event names no identity at all, or it names one the registry does not
know. An event whose identity was simply not enriched (no registry lookup ran)
proves nothing and is skipped. Identity-less events have no identity subject of
their own; they are reported under ``UNATTRIBUTED`` (the subject stage 1 should
route them to), one alert per platform per dedup period (each occurrence an Update).
"""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.detectors.base import DEFAULT_DEDUP_S, Context, DetectorSpec, Event
from pipeline.detectors.frameworks import ai_rmf, maestro, nist_csf
from pipeline.detectors.kinds import UNATTRIBUTED, Facts, single_event

__all__ = ["DETECTOR", "SPEC", "UNATTRIBUTED"]

SPEC = DetectorSpec(
    id="AT-01",
    title="Unattributable action",
    description=(
        "An action ran with no identity, or under an identity unknown to the identity registry."
    ),
    severity="medium",
    subject="identity",
    event_types=frozenset({"action", "delegation"}),
    thresholds={"dedup_s": DEFAULT_DEDUP_S},  # per subject, reason and platform
    frameworks=(
        nist_csf("PR.AA-01"),
        nist_csf("DE.CM-03"),
        ai_rmf("GOVERN 1.6"),
        ai_rmf("MEASURE 2.8"),
        maestro(7),
    ),
    remediation=(
        "Register the identity with an owner (or make the platform send identity_id), and "
        "block unregistered identities at the gateway."
    ),
    needs_registry=True,  # an identity the registry does not list is its finding
)


def _reason(event: Event) -> str | None:
    if not event.get("identity_id"):
        return "no_identity"
    identity = event.get("identity")
    if isinstance(identity, Mapping) and identity.get("known") is False:
        return "unknown_identity"
    return None  # known, or not enriched (no evidence either way)


def judge(event: Event, ctx: Context) -> Facts | None:
    reason = _reason(event)
    if reason is None:
        return None
    return {
        "reason": reason,
        "event_type": event["event_type"],
        "action": event.get("action"),
        "platform": event.get("platform"),
    }


DETECTOR = single_event(SPEC, judge=judge)
