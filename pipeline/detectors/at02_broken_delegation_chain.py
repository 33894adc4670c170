"""AT-02 broken delegation chain: an action that cannot be traced back to a human.

Every action or delegation in a task should lead back to the task's
``task.started`` for a human principal (``on_behalf_of``). The chain is broken when:

- ``no_task_start``: the task's start was never seen;
- ``no_human_principal``: the task started for nobody;
- ``principal_changed``: the event acts for someone other than the task's principal;
- ``unknown_parent``: its ``parent_event_id`` names no event seen in the task.

Each event is judged once the watermark passes it plus a grace, so a start or parent
logged out of order (another platform, a skewed clock) still links up. One finding
per task and reason; later broken events only raise the count.
"""

from __future__ import annotations

from typing import Any

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
from pipeline.detectors.common import event_context
from pipeline.detectors.frameworks import ai_rmf, maestro, nist_csf
from pipeline.detectors.kinds import finding, threshold_ms
from pipeline.detectors.windows import DEADLINE
from pipeline.records import EVENT_TYPES

#: Event ids remembered per task for parent links; past this, unknown parents are not
#: reported (absence can no longer be proven).
MAX_SEEN = 1000
#: Events awaiting judgement per task.
MAX_PENDING = 200
CHECKED = frozenset({"action", "delegation"})

SPEC = DetectorSpec(
    id="AT-02",
    title="Broken delegation chain",
    description=(
        "An action or delegation does not lead back to a task started for a human principal: "
        "the task start, its principal, or the event's parent is missing or different."
    ),
    severity="medium",
    subject="task",
    event_types=EVENT_TYPES,  # every event of the task can be a parent
    thresholds={"grace_s": 5 * MINUTE // SECOND, "check_parent": True},
    frameworks=(
        nist_csf("PR.AA-05"),
        nist_csf("DE.CM-03"),
        ai_rmf("GOVERN 1.2"),
        ai_rmf("MEASURE 2.8"),
        maestro(7),
    ),
    remediation=(
        "Make the agent framework propagate task_id, on_behalf_of and parent_event_id through "
        "every hop, and start each task with task.started for its human principal."
    ),
)


def on_events(ctx: Context, state: State, events: list[Event]) -> list[Finding]:
    seen: list[str] = state.setdefault("seen", [])
    known = set(seen)
    pending: list[dict[str, Any]] = state.setdefault("pending", [])
    for event in events:
        event_id, t = str(event["event_id"]), int(event["event_time"])
        if event_id in known:
            continue  # redelivered
        known.add(event_id)
        if len(seen) < MAX_SEEN:
            seen.append(event_id)
        else:
            state["seen_overflow"] = True
        kind = event["event_type"]
        if kind == "task.started":
            started = state.get("started")
            if started is None or t < started["t"]:
                state["started"] = {
                    "t": t,
                    "id": event_id,
                    "on_behalf_of": event.get("on_behalf_of"),
                }
        elif kind in CHECKED and len(pending) < MAX_PENDING:
            pending.append(
                {
                    "t": t,
                    "id": event_id,
                    "type": kind,
                    "parent": event.get("parent_event_id"),
                    "on_behalf_of": event.get("on_behalf_of"),
                    "context": event_context(event),
                }
            )
    return _judge(ctx, state)


def on_watermark(ctx: Context, state: State) -> list[Finding]:
    return _judge(ctx, state)


def _reasons(ctx: Context, state: State, item: dict[str, Any]) -> list[str]:
    started = state.get("started")
    reasons = []
    if started is None:
        reasons.append("no_task_start")
    elif not started["on_behalf_of"]:
        reasons.append("no_human_principal")
    elif item["on_behalf_of"] and (
        str(item["on_behalf_of"]).casefold() != str(started["on_behalf_of"]).casefold()
    ):
        reasons.append("principal_changed")
    parent = item["parent"]
    if (
        ctx.thresholds["check_parent"]
        and parent
        and not state.get("seen_overflow")
        and parent not in state.get("seen", [])
    ):
        reasons.append("unknown_parent")
    return reasons


def _judge(ctx: Context, state: State) -> list[Finding]:
    state.pop(DEADLINE, None)
    grace = threshold_ms(ctx, "grace_s")
    findings: list[Finding] = []
    waiting = []
    for item in state.get("pending", []):
        if item["t"] + grace > ctx.watermark:
            waiting.append(item)
            continue
        reasons = _reasons(ctx, state, item)
        if not reasons:
            continue
        state["broken_events"] = int(state.get("broken_events", 0)) + 1
        reported: list[str] = state.setdefault("reported", [])
        new = [r for r in reasons if r not in reported]
        if new:
            reported.extend(new)
            findings.append(_finding(ctx, state, item, reasons))
    state["pending"] = waiting
    if waiting:
        state[DEADLINE] = min(i["t"] for i in waiting) + grace
    return findings


def _finding(ctx: Context, state: State, item: dict[str, Any], reasons: list[str]) -> Finding:
    started = state.get("started")
    context = dict(item["context"])
    if started is not None and started["on_behalf_of"]:
        context["on_behalf_of"] = started["on_behalf_of"]
    return finding(
        ctx,
        event_ids=[item["id"]] + ([started["id"]] if started else []),
        facts={
            "reasons": reasons,
            "event_type": item["type"],
            "parent_event_id": item["parent"],
            "event_on_behalf_of": item["on_behalf_of"],
            "task_on_behalf_of": started["on_behalf_of"] if started else None,
            "task_started_at": started["t"] if started else None,
            "broken_events": state["broken_events"],
        },
        time=item["t"],
        context=context,
    )


DETECTOR = Detector(spec=SPEC, on_events=on_events, on_watermark=on_watermark)
