"""SP-01: a credential lives longer than its identity kind's max TTL (or never expires).

Long-lived secrets are what leaks and gets replayed; an agent should hold a token
for about as long as one task. Judged at use (``action``) from the credential's
registry state: ``lifetime_ms`` None with no ``expires_at`` means no expiry.
Unknown credentials, and those whose issuance the registry has not seen yet, are
left to other detectors (no lifetime to judge).
"""

from __future__ import annotations

from pipeline.detectors.base import (
    DAY,
    HOUR,
    Context,
    Detector,
    DetectorSpec,
    Event,
    Finding,
    State,
)
from pipeline.detectors.common import (
    credential_of,
    event_context,
    identity_of,
    issuance_known,
    seconds,
)
from pipeline.detectors.frameworks import ai_rmf, maestro, nist_csf, owasp_nhi

ID = "SP-01"
KINDS = ("ai_agent", "workload", "service_account")

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
    window_ms=None,
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
)


def on_events(ctx: Context, state: State, events: list[Event]) -> list[Finding]:
    findings = []
    th = ctx.thresholds
    for event in events:
        cred = credential_of(event)
        if not issuance_known(cred):
            continue
        lifetime = cred.get("lifetime_ms")
        no_expiry = cred.get("expires_at") is None
        if lifetime is None and not no_expiry:
            continue  # expiry known, issuance unknown: nothing to measure
        kind = identity_of(event).get("kind")
        key = f"max_lifetime_{kind}_s" if kind in KINDS else "max_lifetime_other_s"
        max_ms = int(th[key] * 1000)
        if lifetime is not None and int(lifetime) <= max_ms:
            continue
        t = int(event["event_time"])
        findings.append(
            Finding(
                detector=ID,
                subject=ctx.subject,
                event_ids=[str(event["event_id"])],
                facts={
                    "lifetime_s": None if lifetime is None else seconds(int(lifetime)),
                    "max_lifetime_s": th[key],
                    "no_expiry": lifetime is None,
                    "identity_kind": kind,
                    "issued_via": cred.get("issued_via"),
                    "credential_kind": cred.get("kind"),
                },
                time=t,
                context=event_context(event),
            )
        )
    return findings


DETECTOR = Detector(spec=SPEC, on_events=on_events)
