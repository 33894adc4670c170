"""AZ-01 no policy decision: an action with no allow/deny recorded at request time.

Without a decision logged when the action was requested there is no evidence it
was authorised at all (a decision reconstructed afterwards is not evidence). One
finding per identity and action name per dedup period: a platform that never
calls its policy engine is one finding kept up to date, not one per action.
"""

from __future__ import annotations

from pipeline.detectors.base import DEFAULT_DEDUP_S, DetectorSpec, Event
from pipeline.detectors.frameworks import ai_rmf, maestro, nist_csf
from pipeline.detectors.kinds import Facts, single_event

SPEC = DetectorSpec(
    id="AZ-01",
    title="Action with no policy decision",
    description="An action ran with no policy decision (allow or deny) recorded at request time.",
    severity="medium",
    subject="identity",
    event_types=frozenset({"action"}),
    thresholds={"dedup_s": DEFAULT_DEDUP_S},  # per identity and action name
    frameworks=(
        nist_csf("PR.AA-05"),
        nist_csf("PR.PS-04"),
        ai_rmf("GOVERN 1.2"),
        ai_rmf("MEASURE 2.8"),
        maestro(6),
    ),
    remediation=(
        "Put a policy decision point in front of this action and log its allow/deny with the "
        "request, before the action runs."
    ),
)


def match(event: Event) -> bool:
    return event.get("policy_decision") is None


def facts(event: Event) -> Facts:
    return {
        "action": event.get("action"),
        "scope": event.get("scope"),
        "sensitivity": event.get("sensitivity"),
        "outcome": event.get("outcome"),
        "policy_decision": None,
    }


DETECTOR = single_event(SPEC, match, facts)
