"""RS-02 bulk approvals: one approver deciding many requests within a minute.

Nobody reviews ten requests in sixty seconds; that is a queue being cleared. One
burst is one finding: when the sliding count reaches the threshold, the burst's
window opens at its first decision and lasts one window length. Decisions inside it
join the burst (no new finding); when the window closes an Update carries the final
count if it grew. Decisions after it start counting afresh, so a long session of
rubber-stamping yields one finding per window, never one per decision.
"""

from __future__ import annotations

from pipeline.detectors.base import MINUTE, REVIEW_EFFECTS, SECOND, Context, DetectorSpec
from pipeline.detectors.frameworks import ai_rmf, maestro, nist_csf
from pipeline.detectors.kinds import Facts, Record, Window, event_count

SPEC = DetectorSpec(
    id="RS-02",
    title="Bulk approvals",
    description="One approver decided at least 10 approval requests within 60 seconds.",
    severity="medium",
    subject="approver",
    event_types=frozenset({"approval.decided"}),
    window_ms=MINUTE,
    thresholds={"min_decisions": 10, "window_s": MINUTE // SECOND},
    frameworks=(nist_csf("PR.AA-05"), nist_csf("DE.CM-03"), ai_rmf("GOVERN 3.2"), maestro(6)),
    remediation=(
        "Re-review the batch of approvals with the approver and rate-limit decisions per "
        "approver in the approval tool."
    ),
    effects=REVIEW_EFFECTS,
)


def facts(window: Window, ctx: Context) -> Facts:
    return {
        "decisions_in_window": window.count,
        "approved_in_window": window.hits,
        "denied_in_window": window.count - window.hits,
        "min_decisions": int(ctx.thresholds["min_decisions"]),
        "window_seconds": (window.end - window.start) / SECOND,
        "burst_seconds": (window.last["event_time"] - window.start) / SECOND,
        "approval_ids": [r["approval_id"] for r in window.records if r["approval_id"]],
    }


def approved(record: Record) -> bool:
    return bool(record["decision"] == "approved")


DETECTOR = event_count(
    SPEC,
    fields=("approval_id", "decision", "platform", "environment"),
    threshold="min_decisions",
    hit=approved,
    facts=facts,
)
