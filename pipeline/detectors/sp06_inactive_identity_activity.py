"""SP-06: activity by an identity the registry marks offboarded or disabled.

Offboarding that leaves an agent working is the classic NHI failure. Any event the
identity itself performs counts (actions, credential issuance/rotation, delegation,
task start/finish, approval requests); revocations do not: revoking a dead
identity's credentials is the cleanup this detector asks for. The registry status
is its state at processing time (see the open point on status timestamps).
"""

from __future__ import annotations

from pipeline.detectors.base import DEFAULT_DEDUP_S, Context, DetectorSpec, Event
from pipeline.detectors.common import SELF_ACTIVITY, identity_of
from pipeline.detectors.frameworks import ai_rmf, maestro, nist_csf, owasp_nhi
from pipeline.detectors.kinds import Facts, single_event

ID = "SP-06"

SPEC = DetectorSpec(
    id=ID,
    title="Activity by an offboarded or disabled identity",
    description="An identity marked offboarded or disabled in the registry was active.",
    severity="high",
    subject="identity",
    event_types=SELF_ACTIVITY,
    thresholds={
        "statuses": ["offboarded", "disabled"],
        "dedup_s": DEFAULT_DEDUP_S,  # per identity and event type
    },
    frameworks=(
        owasp_nhi(1),
        nist_csf("PR.AA-01"),
        nist_csf("DE.CM-03"),
        ai_rmf("GOVERN 1.7"),
        maestro(6),
    ),
    remediation=("Revoke every credential of the identity and stop the workload running as it."),
    needs_registry=True,  # the identity's status comes from the registry
)


def judge(event: Event, ctx: Context) -> Facts | None:
    identity = identity_of(event)
    status = str(identity.get("status") or "").lower()
    statuses = {str(s).lower() for s in ctx.thresholds["statuses"]}
    if not identity.get("known") or status not in statuses:
        return None
    return {
        "status": status,
        "event_type": event["event_type"],
        "action": event.get("action"),
        "outcome": event.get("outcome"),
    }


DETECTOR = single_event(SPEC, judge=judge)
