"""RS-04 approved without context: the approver never opened the request they approved.

A view by someone else does not count: the person who said yes must have seen what
they said yes to. Judged once the watermark passes the decision, so a view logged a
moment before it but delivered after it (within the allowed lateness) still counts.
"""

from __future__ import annotations

from pipeline.detectors import _approvals as approvals
from pipeline.detectors.base import REVIEW_EFFECTS, Context, Detector, DetectorSpec, Finding, State
from pipeline.detectors.frameworks import ai_rmf, maestro, nist_csf
from pipeline.detectors.kinds import finding

SPEC = DetectorSpec(
    id="RS-04",
    title="Approved without context",
    description=(
        "An approval was granted with no approval.viewed by that approver before the decision."
    ),
    severity="medium",
    subject="approval",
    event_types=frozenset({"approval.requested", "approval.viewed", "approval.decided"}),
    frameworks=(nist_csf("PR.AA-05"), ai_rmf("GOVERN 3.2"), ai_rmf("MAP 3.5"), maestro(6)),
    remediation=(
        "Require the approval tool to show the request (and log approval.viewed) before it "
        "accepts a decision, and re-review this approval."
    ),
    effects=REVIEW_EFFECTS,
)


def _verdict(ctx: Context, state: State, decided: approvals.Brief) -> list[Finding]:
    viewed = approvals.first_view_by(state, decided["approver"], decided["t"])
    findings = []
    if decided["decision"] == "approved" and viewed is None:
        requested = state.get("requested")
        findings.append(
            finding(
                ctx,
                event_ids=[r["id"] for r in (requested, decided) if r is not None],
                facts={
                    "viewed_by_approver": False,
                    "other_viewers": len(state.get("views", {})),
                    "decided_at": decided["t"],
                    "requested_at": requested["t"] if requested else None,
                },
                time=decided["t"],
                context=approvals.approval_context(state, decided),
            )
        )
    return findings


on_events, on_watermark = approvals.judged_once(_verdict)
DETECTOR = Detector(spec=SPEC, on_events=on_events, on_watermark=on_watermark)
