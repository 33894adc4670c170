"""Findings do not depend on the order Kafka hands input partitions over in.

Each test reads the same events through stage 1 and stage 2 (in one process,
``tests/support/inprocess.py``) with one input partition read far ahead of
another, as a backfill, a catch-up after a restart or a rebalance does. The
watermark is the minimum over the input partitions (idle ones aside), so the
events of the slow partition are not "late" and absence timers wait for them.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from tests.support.inprocess import InProcess

T = 1_790_000_000_000
SECOND = 1000
MINUTE = 60 * SECOND
_n = itertools.count(1)

AGENTS = {
    f"agent-{c}": {
        "kind": "ai_agent",
        "owner": "alice@example.com",
        "team": "sales",
        "environment": "prod",
        "risk_tier": "low",
        "allowed_scopes": ["crm.read"],
        "status": "active",
    }
    for c in "xyzuvw"
}
HUMANS = {
    h: {"kind": "human", "owner": h, "team": "sales", "status": "active"}
    for h in ("alice@example.com", "bob@example.com", "carol@example.com")
}
REGISTRY = {**AGENTS, **HUMANS}


def ev(event_type: str, t: int, **fields: Any) -> dict[str, Any]:
    """A raw, well-governed event of the input contract."""
    base: dict[str, Any] = {
        "event_id": str(uuid.UUID(int=next(_n))),
        "event_type": event_type,
        "event_time": t,
        "platform": "crm-agents",
        "environment": "prod",
        "identity_id": "agent-x",
        "on_behalf_of": "alice@example.com",
    }
    if event_type == "action":
        base.update(
            action="crm.records.read",
            resource="crm://accounts/1",
            scope="crm.read",
            sensitivity="low",
            policy_decision="allow",
            policy_id="pol-1",
            outcome="success",
            latency_ms=10,
        )
    base.update(fields)
    return base


def task_events(task: str, cred: str, identity: str = "agent-x") -> list[dict[str, Any]]:
    """Started at T, a task-bound JIT credential at T+1 s (2 h), an action, completed T+60 s."""
    common = {"identity_id": identity, "task_id": task}
    return [
        ev("task.started", T, **common),
        ev(
            "credential.issued",
            T + SECOND,
            credential_id=cred,
            credential_kind="jit_token",
            issued_via="jit",
            scopes=["crm.read"],
            expires_at=T + 2 * 3600 * SECOND,
            **common,
        ),
        ev("action", T + 5 * SECOND, credential_id=cred, **common),
        ev("task.completed", T + 60 * SECOND, outcome="success", **common),
    ]


def other_partition_action(t: int) -> dict[str, Any]:
    return ev("action", t, identity_id="agent-y", task_id="task-other")


def test_sp02_fires_when_another_partition_is_read_far_ahead() -> None:
    pipe = InProcess(2, identities=REGISTRY)
    pipe.read(1, [other_partition_action(T + 30 * MINUTE)])
    pipe.read(0, task_events("task-a", "cred-a"))
    pipe.idle({0, 1})
    sp02 = pipe.creates("SP-02")
    assert len(sp02) == 1 and sp02[0]["task_id"] == "task-a"
    assert pipe.late_events == 0


def test_sp02_in_order_fires_the_same() -> None:
    pipe = InProcess(2, identities=REGISTRY)
    pipe.read(0, task_events("task-a", "cred-a"))
    pipe.read(1, [other_partition_action(T + 30 * MINUTE)])
    pipe.idle({0, 1})
    assert [a["task_id"] for a in pipe.creates("SP-02")] == ["task-a"]


def test_a_revoke_read_after_another_partitions_later_record_is_not_a_false_sp02() -> None:
    pipe = InProcess(2, identities=REGISTRY)
    pipe.read(0, task_events("task-a", "cred-a"))
    pipe.read(1, [other_partition_action(T + 12 * MINUTE)])
    pipe.read(
        0,
        [ev("credential.revoked", T + 80 * SECOND, credential_id="cred-a", task_id="task-a")],
    )
    pipe.idle({0, 1})
    assert pipe.findings("SP-02") == []
    assert pipe.late_events == 0


def test_sp07_credential_reuse_across_partitions_one_read_20_min_ahead() -> None:
    pipe = InProcess(2, identities=REGISTRY)
    shared = {"credential_id": "cred-shared"}
    ahead = [ev("action", T + 15 * SECOND, identity_id="agent-y", **shared)]
    ahead += [other_partition_action(T + m * MINUTE) for m in range(1, 21)]
    pipe.read(1, ahead)
    pipe.read(0, [ev("action", T, identity_id="agent-x", **shared)])
    pipe.idle({0, 1})
    sp07 = pipe.creates("SP-07")
    assert len(sp07) == 1 and sp07[0]["credential_id"] == "cred-shared"


def decisions(n: int, spacing_ms: int, approver: str = "bob@example.com") -> list[Any]:
    """``n`` approved decisions by one approver for agents on different partitions."""
    out = []
    agents = sorted(AGENTS)
    for i in range(n):
        identity = agents[i % 3]
        t = T + i * spacing_ms
        out.append(
            (
                i % 3,
                ev(
                    "approval.decided",
                    t,
                    identity_id=identity,
                    approval_id=f"appr-{i}",
                    approver=approver,
                    decision="approved",
                    risk="low",
                ),
            )
        )
    return out


def read_skewed(pipe: InProcess, placed: list[Any], fast: int, until: int) -> None:
    """Partition ``fast`` is read whole (and then 20 more minutes) before the others."""
    by_partition: dict[int, list[Any]] = {}
    for partition, event in placed:
        by_partition.setdefault(partition, []).append(event)
    head = by_partition.pop(fast, [])
    head += [other_partition_action(until + m * MINUTE) for m in range(1, 21)]
    for i in range(0, len(head), 10):
        pipe.read(fast, head[i : i + 10])
    for partition, events in sorted(by_partition.items()):
        for i in range(0, len(events), 10):
            pipe.read(partition, events[i : i + 10])


def test_rs02_bulk_approvals_spread_over_partitions() -> None:
    pipe = InProcess(3, identities=REGISTRY)
    placed = decisions(25, 1600)  # 25 decisions within 40 s
    read_skewed(pipe, placed, fast=0, until=T + 40 * SECOND)
    pipe.idle({0, 1, 2})
    assert [a["approver"] for a in pipe.creates("RS-02")] == ["bob@example.com"]


def test_rs03_always_yes_over_75_minutes_spread_over_partitions() -> None:
    pipe = InProcess(3, identities=REGISTRY)
    placed = decisions(80, 56 * SECOND)  # 80 decisions over ~75 min, all approved
    read_skewed(pipe, placed, fast=1, until=T + 80 * 56 * SECOND)
    pipe.idle({0, 1, 2})
    assert [a["approver"] for a in pipe.creates("RS-03")] == ["bob@example.com"]


def test_a_delegates_action_read_ahead_of_its_delegator_is_not_a_false_at02() -> None:
    pipe = InProcess(2, identities=REGISTRY)
    start = ev("task.started", T, identity_id="agent-x", task_id="task-d")
    delegation = ev(
        "delegation",
        T + SECOND,
        identity_id="agent-x",
        task_id="task-d",
        delegate_identity_id="agent-y",
        scopes=["crm.read"],
        parent_event_id=start["event_id"],
    )
    action = ev(
        "action",
        T + 2 * SECOND,
        identity_id="agent-y",
        task_id="task-d",
        parent_event_id=delegation["event_id"],
    )
    later = [other_partition_action(T + m * MINUTE) for m in range(1, 15)]
    pipe.read(1, [action, *later])  # the delegate's partition, 14 min ahead
    pipe.read(0, [start, delegation])
    pipe.idle({0, 1})
    assert [a for a in pipe.findings("AT-02") if a["task_id"] == "task-d"] == []


def test_a_silent_partition_holds_the_watermark_until_it_is_idle() -> None:
    pipe = InProcess(2, identities=REGISTRY, idle_s=5.0)
    pipe.read(0, task_events("task-a", "cred-a"))
    pipe.read(0, [other_partition_action(T + 30 * MINUTE)])
    # partition 1 has said nothing: it holds the watermark, so nothing is judged yet
    pipe.idle({0}, seconds=60)
    assert pipe.findings("SP-02") == []
    # caught up (empty) and silent for the idle time: it no longer holds it back
    pipe.idle({0, 1}, seconds=6)
    assert [a["task_id"] for a in pipe.creates("SP-02")] == ["task-a"]


def test_data_on_an_idle_partition_older_than_the_watermark_is_counted_late_not_lost() -> None:
    pipe = InProcess(2, identities=REGISTRY, idle_s=5.0)
    pipe.read(0, [other_partition_action(T + 30 * MINUTE)])
    pipe.idle({0, 1}, seconds=6)  # both idle: the watermark is the newest of all
    late = ev("action", T, identity_id="agent-z", policy_decision=None)
    pipe.read(1, [late])  # partition 1 wakes up with an old event
    assert pipe.late_events == 1
    # still judged by the single-event detectors
    az01 = pipe.findings("AZ-01")
    assert any(late["event_id"] in a["evidence"]["event_ids"] for a in az01)


def test_a_caught_up_partition_that_gets_data_again_holds_the_watermark_again() -> None:
    pipe = InProcess(2, identities=REGISTRY, idle_s=5.0)
    pipe.read(1, [other_partition_action(T)])
    pipe.idle({1}, seconds=6)  # partition 1 idle, partition 0 never reported: held
    pipe.read(0, task_events("task-a", "cred-a"))
    pipe.read(1, [other_partition_action(T + 2 * SECOND)])  # active again, far behind
    pipe.read(0, [other_partition_action(T + 30 * MINUTE)])
    assert pipe.findings("SP-02") == []  # partition 1 at T + 2 s holds the watermark
    pipe.idle({0, 1}, seconds=6)
    assert [a["task_id"] for a in pipe.creates("SP-02")] == ["task-a"]
