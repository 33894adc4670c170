"""SP-08: an active non-human identity with no owner, or whose owner is offboarded or disabled.

Nobody answers for an orphaned NHI: it is not reviewed, rotated or retired. Judged
when the identity acts (registry ``owner`` and the owner's own ``owner_status``);
humans are out of scope (they are their own owners).
"""

from __future__ import annotations

from pipeline.detectors.base import DAY, Context, DetectorSpec, Event
from pipeline.detectors.common import SELF_ACTIVITY, identity_of
from pipeline.detectors.frameworks import ai_rmf, maestro, nist_csf, owasp_nhi
from pipeline.detectors.kinds import Facts, single_event

ID = "SP-08"

SPEC = DetectorSpec(
    id=ID,
    title="Orphaned identity",
    description=(
        "A non-human identity acted while it has no owner, or its owner is offboarded or disabled."
    ),
    severity="medium",
    subject="identity",
    event_types=SELF_ACTIVITY - {"task.completed"},
    thresholds={
        "owner_statuses": ["offboarded", "disabled"],
        "dedup_s": DAY // 1000,  # one finding per identity per day while it acts
    },
    frameworks=(
        owasp_nhi(1),
        nist_csf("GV.RR-02"),
        nist_csf("PR.AA-01"),
        ai_rmf("GOVERN 2.1"),
        maestro(6),
    ),
    remediation="Assign an active owner to the identity or retire it.",
    needs_registry=True,  # the owner and the owner's status come from the registry
)


def judge(event: Event, ctx: Context) -> Facts | None:
    identity = identity_of(event)
    if not identity.get("known") or identity.get("kind") == "human":
        return None
    owner = identity.get("owner")
    owner_status = str(identity.get("owner_status") or "").lower() or None
    if not owner:
        reason = "no_owner"
    elif owner_status in {str(s).lower() for s in ctx.thresholds["owner_statuses"]}:
        reason = f"owner_{owner_status}"
    else:
        return None
    return {
        "reason": reason,
        "owner": owner or None,
        "owner_status": owner_status,
        "identity_kind": identity.get("kind"),
    }


DETECTOR = single_event(SPEC, judge=judge)
