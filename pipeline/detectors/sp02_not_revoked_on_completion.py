"""SP-02: a credential issued for a task is still live a grace period after ``task.completed``.

An absence check on event time: ``task.completed`` at C arms a timer at C + grace;
when the watermark passes it, every credential issued for the task that was neither
revoked nor expired by then is reported (one finding per task, listing them).
Revocations reach the task through their ``task_id`` or, failing that, the
credential's registry ``task_id`` (see ``registry.subject_value``).
"""

from __future__ import annotations

from typing import Any

from pipeline.detectors.base import (
    DAY,
    MINUTE,
    Context,
    Detector,
    DetectorSpec,
    Event,
    Finding,
    State,
)
from pipeline.detectors.common import capped, event_context
from pipeline.detectors.frameworks import ai_rmf, maestro, nist_csf, owasp_nhi
from pipeline.detectors.kinds import finding, threshold_ms
from pipeline.detectors.windows import DEADLINE, set_deadline

ID = "SP-02"
#: A task never seen completing is forgotten this long after its last event.
STATE_TTL_MS = 7 * DAY
MAX_CREDENTIALS = 256  # per task

SPEC = DetectorSpec(
    id=ID,
    title="Task credential not revoked on completion",
    description=(
        "A credential issued for a task was still live (neither revoked nor expired) "
        "a grace period after the task completed."
    ),
    severity="medium",
    subject="task",
    event_types=frozenset({"credential.issued", "credential.revoked", "task.completed"}),
    window_ms=5 * MINUTE,
    thresholds={"grace_s": 5 * MINUTE // 1000},
    frameworks=(
        owasp_nhi(7),
        owasp_nhi(1),
        nist_csf("PR.AA-01"),
        nist_csf("PR.AA-05"),
        ai_rmf("MANAGE 2.4"),
        maestro(4),
    ),
    remediation=(
        "Revoke the task's credentials now and make the agent runtime revoke them "
        "when the task completes."
    ),
    provides={"revocation_grace_ms": lambda thresholds: int(thresholds["grace_s"]) * 1000},
)


def on_events(ctx: Context, state: State, events: list[Event]) -> list[Finding]:
    if state.get("done") is not None:
        return []  # already judged; replays and stragglers change nothing
    creds: dict[str, list[Any]] = state.setdefault("creds", {})
    for event in events:
        t = int(event["event_time"])
        state["last"] = max(t, int(state.get("last", t)))
        kind = event["event_type"]
        cred_id = event.get("credential_id")
        if kind == "credential.issued" and cred_id:
            entry = creds.setdefault(cred_id, [None, None, None, None])
            if entry[0] is None or t < entry[0]:
                entry[:3] = [t, event.get("expires_at"), event["event_id"]]
        elif kind == "credential.revoked" and cred_id:
            entry = creds.setdefault(cred_id, [None, None, None, None])
            entry[3] = t if entry[3] is None else min(int(entry[3]), t)
        elif kind == "task.completed" and "completed" not in state:
            state["completed"] = [t, event["event_id"]]
            state["ctx"] = event_context(event)
        while len(creds) > MAX_CREDENTIALS:
            del creds[next(iter(creds))]
    _arm(ctx, state)
    return []


def _arm(ctx: Context, state: State) -> None:
    state.pop(DEADLINE, None)
    if state.get("done") is not None:
        set_deadline(state, int(state["done"]) + STATE_TTL_MS)
    elif "completed" in state:
        set_deadline(state, int(state["completed"][0]) + threshold_ms(ctx, "grace_s"))
    elif "last" in state:
        set_deadline(state, int(state["last"]) + STATE_TTL_MS)


def on_watermark(ctx: Context, state: State) -> list[Finding]:
    wm = ctx.watermark
    if state.get("done") is not None:
        if wm >= int(state["done"]) + STATE_TTL_MS:
            state.clear()
        else:
            _arm(ctx, state)
        return []
    if "completed" not in state:
        if wm >= int(state.get("last", wm)) + STATE_TTL_MS:
            state.clear()  # never completed: stop holding its credentials
        else:
            _arm(ctx, state)
        return []
    grace_ms = threshold_ms(ctx, "grace_s")
    completed, completed_event = int(state["completed"][0]), str(state["completed"][1])
    deadline = completed + grace_ms
    if wm < deadline:
        _arm(ctx, state)
        return []
    issued = {c: e for c, e in state.get("creds", {}).items() if e[0] is not None}
    live = {
        c: e
        for c, e in issued.items()
        if (e[3] is None or int(e[3]) > deadline) and (e[1] is None or int(e[1]) > deadline)
    }
    findings = []
    if live:
        context = dict(state.get("ctx", {}))
        context.update(task_id=ctx.subject, credential_id=sorted(live)[0])
        findings.append(
            finding(
                ctx,
                event_ids=[completed_event, *(str(live[c][2]) for c in sorted(live))],
                facts={
                    "grace_s": ctx.thresholds["grace_s"],
                    "completed_at": completed,
                    "deadline": deadline,
                    "credentials_issued": len(issued),
                    "revoked_in_time": sum(
                        1 for e in issued.values() if e[3] is not None and int(e[3]) <= deadline
                    ),
                    "unrevoked_credential_ids": capped(live),
                },
                window_start=completed,
                window_end=deadline,
                time=deadline,
                context=context,
            )
        )
    state.clear()
    state["done"] = deadline
    _arm(ctx, state)
    return findings


DETECTOR = Detector(spec=SPEC, on_events=on_events, on_watermark=on_watermark)
