"""AZ-02 denied but executed: the policy said deny and the action succeeded anyway.

Either enforcement is missing (the decision is advisory) or it was bypassed; both
mean the policy protects nothing. Rate-limited per identity, action and resource,
so each distinct bypass is reported and a retry loop is not.
"""

from __future__ import annotations

from pipeline.detectors.base import DEFAULT_DEDUP_S, DetectorSpec, Event, Severity
from pipeline.detectors.frameworks import ai_rmf, maestro, nist_csf, owasp_nhi
from pipeline.detectors.kinds import Facts, single_event

SPEC = DetectorSpec(
    id="AZ-02",
    title="Denied but executed",
    description="An action the policy denied at request time completed successfully.",
    severity="high",
    subject="identity",
    event_types=frozenset({"action"}),
    thresholds={"dedup_s": DEFAULT_DEDUP_S},  # per identity, action and resource
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


def match(event: Event) -> bool:
    return event.get("policy_decision") == "deny" and event.get("outcome") == "success"


def facts(event: Event) -> Facts:
    return {
        "action": event.get("action"),
        "scope": event.get("scope"),
        "sensitivity": event.get("sensitivity"),
        "policy_decision": "deny",
        "policy_id": event.get("policy_id"),
        "outcome": "success",
    }


def severity(event: Event) -> Severity | None:
    """A bypass of a critical action is critical."""
    return "critical" if event.get("sensitivity") == "critical" else None


DETECTOR = single_event(SPEC, match, facts, severity=severity)
