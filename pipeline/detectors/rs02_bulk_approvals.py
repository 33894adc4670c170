"""RS-02 bulk approvals: one approver deciding many requests within a minute.

Nobody reviews ten requests in sixty seconds; that is a queue being cleared. One
burst is one finding: when the sliding count reaches the threshold, the burst's
window opens at its first decision and lasts one window length. Decisions inside it
join the burst (no new finding); when the window closes an Update carries the final
count if it grew. Decisions after it start counting afresh, so a long session of
rubber-stamping yields one finding per window, never one per decision.
"""

from __future__ import annotations

from typing import Any

from pipeline.detectors import _ordered as ordered
from pipeline.detectors.base import (
    MINUTE,
    SECOND,
    Context,
    Detector,
    DetectorSpec,
    Event,
    Finding,
    State,
)
from pipeline.detectors.frameworks import ai_rmf, maestro, nist_csf

#: Ids kept as evidence per burst (the count says how many there were).
MAX_EVIDENCE = 20
#: Bound on decisions held in the sliding window (saturates the count, never the rule).
MAX_RECENT = 1000

SPEC = DetectorSpec(
    id="RS-02",
    title="Bulk approvals",
    description="One approver decided at least 10 approval requests within 60 seconds.",
    severity="medium",
    subject="approver",
    event_types=frozenset({"approval.decided"}),
    window_ms=MINUTE,
    thresholds={"min_decisions": 10, "window_s": MINUTE // SECOND},
    frameworks=(
        nist_csf("PR.AA-05"),
        nist_csf("DE.CM-03"),
        ai_rmf("GOVERN 3.2"),
        maestro(6),
    ),
    remediation=(
        "Re-review the batch of approvals with the approver and rate-limit decisions per "
        "approver in the approval tool."
    ),
)

#: Held record layout: [event_time, event_id, approval_id, decision, platform, environment].
FIELDS = ("approval_id", "decision", "platform", "environment")


def on_events(ctx: Context, state: State, events: list[Event]) -> list[Finding]:
    ordered.hold(state, events, *FIELDS)
    return _advance(ctx, state)


def on_watermark(ctx: Context, state: State) -> list[Finding]:
    return _advance(ctx, state)


def _advance(ctx: Context, state: State) -> list[Finding]:
    window = int(ctx.thresholds["window_s"]) * SECOND
    minimum = int(ctx.thresholds["min_decisions"])
    findings: list[Finding] = []
    for record in ordered.release(ctx, state):
        t = record[0]
        burst: dict[str, Any] | None = state.get("burst")
        if burst is not None and t < burst["end"]:
            _join(burst, record)
            continue
        if burst is not None:
            findings += _close(ctx, state)
        recent: list[list[Any]] = state.setdefault("recent", [])
        recent.append(record)
        del recent[: max(len(recent) - MAX_RECENT, 0)]
        state["recent"] = recent = [r for r in recent if r[0] > t - window]
        if len(recent) >= minimum:
            burst = {
                "start": recent[0][0],
                "end": recent[0][0] + window,
                "count": 0,
                "approved": 0,
                "reported": 0,
                "ids": [],
                "approvals": [],
                "last": record,
            }
            for r in recent:
                _join(burst, r)
            burst["reported"] = burst["count"]
            state["burst"] = burst
            state["recent"] = []
            findings.append(_finding(ctx, burst))
    burst = state.get("burst")
    if burst is not None and burst["end"] <= ctx.watermark:
        findings += _close(ctx, state)
    state.pop("_deadline", None)
    deadlines = [
        d
        for d in (ordered.next_held(state), (state.get("burst") or {}).get("end"))
        if d is not None
    ]
    if deadlines:
        state["_deadline"] = min(deadlines)
    return findings


def _join(burst: dict[str, Any], record: list[Any]) -> None:
    burst["count"] += 1
    burst["approved"] += record[3] == "approved"
    burst["last"] = record
    if len(burst["ids"]) < MAX_EVIDENCE:
        burst["ids"].append(record[1])
        if record[2]:
            burst["approvals"].append(record[2])


def _close(ctx: Context, state: State) -> list[Finding]:
    """The burst's window is over: an Update with the final count if it grew."""
    burst = state.pop("burst")
    return [_finding(ctx, burst)] if burst["count"] > burst["reported"] else []


def _finding(ctx: Context, burst: dict[str, Any]) -> Finding:
    last = burst["last"]
    window = int(ctx.thresholds["window_s"]) * SECOND
    return Finding(
        detector=ctx.spec.id,
        subject=ctx.subject,
        event_ids=list(burst["ids"]),
        facts={
            "decisions_in_window": burst["count"],
            "approved_in_window": burst["approved"],
            "denied_in_window": burst["count"] - burst["approved"],
            "min_decisions": int(ctx.thresholds["min_decisions"]),
            "window_seconds": window / SECOND,
            "burst_seconds": (last[0] - burst["start"]) / SECOND,
            "approval_ids": list(burst["approvals"]),
        },
        window_start=burst["start"],
        window_end=burst["end"],
        time=last[0],
        context=_context(ctx.subject, platform=last[4], environment=last[5]),
    )


def _context(approver: str, **fields: Any) -> dict[str, Any]:
    return {"approver": approver, **{k: v for k, v in fields.items() if v}}


DETECTOR = Detector(spec=SPEC, on_events=on_events, on_watermark=on_watermark)
