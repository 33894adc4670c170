"""RS-06 action ahead of approval: an action cited an approval it did not (yet) have.

Three ways an action carrying ``approval_id`` breaks its approval:

- ``before_decision``: it ran before the approval was decided (decided later, or
  never while the request is known);
- ``denied``: the approval was denied before the action ran;
- ``unknown``: no request or decision for that approval was seen at all by the time
  the watermark passed the action plus a grace period (a fabricated or foreign id).

Each action is judged once the watermark passes its event time, so every approval
event up to that time is in; "unknown" waits the grace longer, because approval
systems often log after the fact. One finding per approval and reason: the first
offending action fires it, later ones only raise the count.
"""

from __future__ import annotations

from typing import Any

from pipeline.detectors import _approvals as approvals
from pipeline.detectors.base import (
    MINUTE,
    REVIEW_EFFECTS,
    SECOND,
    Context,
    Detector,
    DetectorSpec,
    Event,
    Finding,
    State,
)
from pipeline.detectors.common import event_context
from pipeline.detectors.frameworks import ai_rmf, maestro, nist_csf
from pipeline.detectors.kinds import finding, threshold_ms
from pipeline.detectors.windows import DEADLINE, set_deadline

#: Actions awaiting judgement per approval (an approval covers a handful of actions).
MAX_PENDING = 64

SPEC = DetectorSpec(
    id="RS-06",
    title="Action ahead of approval",
    description=(
        "An action ran before its approval was decided, under a denied approval, or under an "
        "approval id no approval system ever reported."
    ),
    severity="high",
    subject="approval",
    event_types=frozenset({"action", "approval.requested", "approval.decided"}),
    thresholds={"unknown_grace_s": 10 * MINUTE // SECOND},
    frameworks=(nist_csf("PR.AA-05"), ai_rmf("GOVERN 3.2"), ai_rmf("MANAGE 2.4"), maestro(7)),
    remediation=(
        "Make the agent runtime block actions until the cited approval is decided as approved, "
        "and review what this action changed."
    ),
    effects=REVIEW_EFFECTS,
)


def on_events(ctx: Context, state: State, events: list[Event]) -> list[Finding]:
    pending: list[dict[str, Any]] = state.setdefault("actions", [])
    for event in events:
        kind = event["event_type"]
        if kind == "approval.requested" or kind == "approval.decided":
            slot = "requested" if kind == "approval.requested" else "decided"
            current = state.get(slot)
            if current is None or event["event_time"] < current["t"]:
                state[slot] = approvals.brief(event)
        elif (
            event.get("outcome") != "failure"
            and len(pending) < MAX_PENDING
            and all(a["id"] != event["event_id"] for a in pending)
        ):
            pending.append(
                {
                    "t": int(event["event_time"]),
                    "id": str(event["event_id"]),
                    "context": event_context(event),
                }
            )
    return _judge(ctx, state)


def on_watermark(ctx: Context, state: State) -> list[Finding]:
    return _judge(ctx, state)


def _reason(ctx: Context, state: State, t: int) -> tuple[bool, str | None]:
    """(judged yet?, reason or None) for an action at ``t`` the watermark has passed."""
    decided, requested = state.get("decided"), state.get("requested")
    if decided is not None and decided["t"] <= t:
        return True, "denied" if decided["decision"] == "denied" else None
    if decided is not None or requested is not None:
        return True, "before_decision"
    grace = threshold_ms(ctx, "unknown_grace_s")
    if ctx.watermark >= t + grace:
        return True, "unknown"
    return False, None


def _judge(ctx: Context, state: State) -> list[Finding]:
    state.pop(DEADLINE, None)  # re-armed below from what is still waiting
    findings: list[Finding] = []
    waiting: list[dict[str, Any]] = []
    grace = threshold_ms(ctx, "unknown_grace_s")
    for action in state.get("actions", []):
        judged, reason = (
            (False, None) if action["t"] > ctx.watermark else _reason(ctx, state, action["t"])
        )
        if not judged:
            waiting.append(action)
            set_deadline(state, action["t"] if action["t"] > ctx.watermark else action["t"] + grace)
            continue
        if reason is None:
            continue
        state["violations"] = int(state.get("violations", 0)) + 1
        reported: list[str] = state.setdefault("reported", [])
        if reason not in reported:
            reported.append(reason)
            findings.append(_finding(ctx, state, action, reason))
    state["actions"] = waiting
    return findings


def _finding(ctx: Context, state: State, action: dict[str, Any], reason: str) -> Finding:
    decided, requested = state.get("decided"), state.get("requested")
    context = dict(action["context"])
    for source in (decided, requested):
        for name, value in (source or {}).get("context", {}).items():
            context.setdefault(name, value)
    if decided is not None and decided.get("approver"):
        context["approver"] = decided["approver"]
    return finding(
        ctx,
        event_ids=[action["id"]] + [s["id"] for s in (requested, decided) if s is not None],
        facts={
            "reason": reason,
            "action_at": action["t"],
            "requested_at": requested["t"] if requested else None,
            "decided_at": decided["t"] if decided else None,
            "decision": decided["decision"] if decided else None,
            "seconds_ahead": (
                (decided["t"] - action["t"]) / SECOND
                if decided is not None and decided["t"] > action["t"]
                else None
            ),
            "offending_actions": state["violations"],
        },
        time=action["t"],
        context=context,
    )


DETECTOR = Detector(spec=SPEC, on_events=on_events, on_watermark=on_watermark)
