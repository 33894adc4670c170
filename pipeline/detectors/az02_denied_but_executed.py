"""AZ-02 denied but executed: the policy said deny and the action succeeded anyway.

Either enforcement is missing (the decision is advisory) or it was bypassed; both
mean the policy protects nothing. Rate-limited per identity, action and resource,
so each distinct bypass is reported and a retry loop is not.
"""

from __future__ import annotations

from pipeline.detectors.base import (
    HOUR,
    SECOND,
    Context,
    Detector,
    DetectorSpec,
    Event,
    Finding,
    State,
)
from pipeline.detectors.common import event_context
from pipeline.detectors.frameworks import ai_rmf, maestro, nist_csf, owasp_nhi

SPEC = DetectorSpec(
    id="AZ-02",
    title="Denied but executed",
    description="An action the policy denied at request time completed successfully.",
    severity="high",
    subject="identity",
    event_types=frozenset({"action"}),
    window_ms=None,
    thresholds={"dedup_s": HOUR // SECOND},  # per identity, action and resource
    frameworks=(
        owasp_nhi(5),
        nist_csf("PR.AA-05"),
        nist_csf("DE.CM-03"),
        ai_rmf("MANAGE 2.4"),
        maestro(6),
    ),
    remediation=(
        "Make the policy decision enforcing (block on deny) for this platform and review what "
        "the denied action changed."
    ),
)


def on_events(ctx: Context, state: State, events: list[Event]) -> list[Finding]:
    findings = []
    for event in events:
        if event.get("policy_decision") != "deny" or event.get("outcome") != "success":
            continue
        t = int(event["event_time"])
        findings.append(
            Finding(
                detector=ctx.spec.id,
                subject=ctx.subject,
                event_ids=[str(event["event_id"])],
                facts={
                    "action": event.get("action"),
                    "scope": event.get("scope"),
                    "sensitivity": event.get("sensitivity"),
                    "policy_decision": "deny",
                    "policy_id": event.get("policy_id"),
                    "outcome": "success",
                },
                time=t,
                context=event_context(event),
                severity="critical" if event.get("sensitivity") == "critical" else None,
            )
        )
    return findings


DETECTOR = Detector(spec=SPEC, on_events=on_events)
