"""RS-05 self-approval: the person who approved is the one the request was for.

Separation of duties fails when the approver is the human the agent acts for, the
requesting identity's owner, or the requesting identity itself. Who asked comes
from ``approval.requested`` (its ``on_behalf_of`` and enriched identity owner),
falling back to the decision's own fields when the request was never seen.
Compared case-insensitively: principals are mostly e-mail addresses.
"""

from __future__ import annotations

from pipeline.detectors import _approvals as approvals
from pipeline.detectors.base import REVIEW_EFFECTS, Context, Detector, DetectorSpec, Finding, State
from pipeline.detectors.frameworks import ai_rmf, maestro, nist_csf
from pipeline.detectors.kinds import finding

SPEC = DetectorSpec(
    id="RS-05",
    title="Self-approval",
    description=(
        "The approver is the principal the request was made on behalf of, the owner of the "
        "requesting identity, or that identity itself."
    ),
    severity="high",
    subject="approval",
    event_types=frozenset({"approval.requested", "approval.decided"}),
    frameworks=(nist_csf("PR.AA-05"), ai_rmf("GOVERN 2.1"), ai_rmf("GOVERN 3.2"), maestro(6)),
    remediation=(
        "Route approvals to someone other than the requester or the agent's owner, and have "
        "an independent approver re-review this one."
    ),
    effects=REVIEW_EFFECTS,
)

#: (fact name, where the requester's side comes from) in order of precedence.
RELATIONS = (
    ("on_behalf_of", "on_behalf_of"),
    ("identity_owner", "owner"),
    ("identity", "identity_id"),
)


def _same(a: object, b: object) -> bool:
    return isinstance(a, str) and isinstance(b, str) and bool(a) and a.casefold() == b.casefold()


def _verdict(ctx: Context, state: State, decided: approvals.Brief) -> list[Finding]:
    requester = state.get("requested") or decided
    approver = decided["approver"]
    matched = [
        name
        for name, field in RELATIONS
        if _same(approver, requester.get(field) or decided.get(field))
    ]
    findings = []
    if decided["decision"] == "approved" and matched:
        findings.append(
            finding(
                ctx,
                event_ids=list(dict.fromkeys([requester["id"], decided["id"]])),
                facts={
                    "approver_is": matched,
                    "requesting_identity": requester.get("identity_id"),
                    "decided_at": decided["t"],
                },
                time=decided["t"],
                context=approvals.approval_context(state, decided),
            )
        )
    return findings


on_events, on_watermark = approvals.judged_once(_verdict)
DETECTOR = Detector(spec=SPEC, on_events=on_events, on_watermark=on_watermark)
