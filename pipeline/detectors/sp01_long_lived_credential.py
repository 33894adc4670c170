"""SP-01: a credential lives longer than its identity kind's max TTL (or never expires).

Long-lived secrets are what leaks and gets replayed; an agent should hold a token
for about as long as one task. Judged at use (``action``) from the credential's
registry state: ``lifetime_ms`` None with no ``expires_at`` means no expiry.
Unknown credentials, and those whose issuance the registry has not seen yet, are
left to other detectors (no lifetime to judge).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.detectors.base import DAY, HOUR, Context, DetectorSpec, Event
from pipeline.detectors.common import credential_of, identity_of, issuance_known, seconds
from pipeline.detectors.frameworks import ai_rmf, maestro, nist_csf, owasp_nhi
from pipeline.detectors.kinds import Facts, single_event

ID = "SP-01"
KINDS = ("ai_agent", "workload", "service_account")


def max_lifetimes_ms(thresholds: Mapping[str, Any]) -> dict[str, int]:
    """Per identity kind (``other``: humans and unknown kinds), the longest lifetime
    not judged long-lived (ms): what the ephemeral metric counts as short-lived."""
    return {kind: int(thresholds[f"max_lifetime_{kind}_s"]) * 1000 for kind in (*KINDS, "other")}


SPEC = DetectorSpec(
    id=ID,
    title="Long-lived credential used",
    description=(
        "An identity used a credential whose lifetime exceeds the maximum TTL for its "
        "identity kind, or that never expires."
    ),
    severity="medium",
    subject="credential",
    event_types=frozenset({"action"}),
    thresholds={
        "max_lifetime_ai_agent_s": HOUR // 1000,
        "max_lifetime_workload_s": DAY // 1000,
        "max_lifetime_service_account_s": 90 * DAY // 1000,
        "max_lifetime_other_s": DAY // 1000,  # human or unknown kind
        "dedup_s": DAY // 1000,  # one finding per credential per day while in use
    },
    frameworks=(
        owasp_nhi(7),
        nist_csf("PR.AA-01"),
        nist_csf("PR.AA-05"),
        ai_rmf("MEASURE 2.7"),
        maestro(6),
    ),
    remediation=(
        "Replace the credential with a short-lived (JIT) one scoped to the task, then revoke it."
    ),
    provides={"credential_max_lifetime_ms": max_lifetimes_ms},
    needs_registry=True,  # the lifetime limit is per identity kind (registry)
)


def judge(event: Event, ctx: Context) -> Facts | None:
    cred = credential_of(event)
    if not issuance_known(cred):
        return None
    lifetime = cred.get("lifetime_ms")
    if lifetime is None and cred.get("expires_at") is not None:
        return None  # expiry known, issuance unknown: nothing to measure
    kind = identity_of(event).get("kind")
    key = f"max_lifetime_{kind}_s" if kind in KINDS else "max_lifetime_other_s"
    if lifetime is not None and int(lifetime) <= int(ctx.thresholds[key] * 1000):
        return None
    return {
        "lifetime_s": None if lifetime is None else seconds(int(lifetime)),
        "max_lifetime_s": ctx.thresholds[key],
        "no_expiry": lifetime is None,
        "identity_kind": kind,
        "issued_via": cred.get("issued_via"),
        "credential_kind": cred.get("kind"),
    }


DETECTOR = single_event(SPEC, judge=judge)
