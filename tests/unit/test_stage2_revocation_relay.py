"""A revocation stage 1 could not route to its task reaches it through the credential.

Stage 1 routes a ``credential.revoked`` without ``task_id`` to the task named by the
credential's Redis hash. A Redis that came back empty has lost that field; the
credential's stage-2 subject remembers its task from the issuance and relays the
revocation, so SP-02 does not report a revoked credential live
(tests/integration/test_registry_lost_midstream.py shows the fault end to end).
"""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.detectors.base import HOUR, MINUTE, RELAYED
from pipeline.flow.messages import Progress, partition_for
from pipeline.flow.stage2 import Stage2
from tests.support.inprocess import InProcess
from tests.unit.detectors.factory import enriched
from tests.unit.test_event_time import REGISTRY, SECOND, T, ev, task_events
from tests.unit.test_stage2_expiry import GRACE, LATENESS, T0, Pipe

#: the credential's view after the loss: the hash holds only what the revocation wrote
LOST = {"known": False, "task_id": None, "issued_at": None, "issued_via": None}
COMMON = {"task_id": "task-1", "identity_id": "agent-1", "credential_id": "cred-1"}


def revocation(credential: dict[str, Any]) -> dict:
    return enriched(
        "credential.revoked",
        T0 + 3 * MINUTE,
        event_id="r-1",
        credential=credential,
        **{**COMMON, "task_id": None},
    )


def before_revocation() -> list[dict]:
    return [
        enriched("credential.issued", T0, event_id="i-1", issued_via="jit", **COMMON),
        enriched("action", T0 + MINUTE, event_id="a-1", **COMMON),
        enriched(
            "task.completed", T0 + 2 * MINUTE, event_id="c-1", **{**COMMON, "credential_id": None}
        ),
    ]


def run(stream: list[list[dict]], upstream: list[int | None] | None = None) -> tuple[Any, ...]:
    """Feed each record (with its upstream watermark, default its newest event), then
    move past SP-02's grace; the task's detectors raised, and the stage."""
    pipe = Pipe()
    raised: list[dict] = []
    for i, record in enumerate(stream):
        wm = upstream[i] if upstream else None
        raised += pipe.feed(record, wm=wm).alerts
    for out in pipe.advance(T0 + 2 * MINUTE + GRACE + LATENESS + HOUR):
        raised += out.alerts
    found = {a["detector"] for a in raised if a.get("task_id") == "task-1"}
    return found, pipe.s, raised


def test_a_revocation_redis_could_not_route_is_relayed_to_its_task() -> None:
    found, stage, raised = run([[e] for e in [*before_revocation(), revocation(LOST)]])
    assert "SP-02" not in found
    assert stage.stats.revocations_relayed == 1
    assert not any(RELAYED in str(a) for a in raised)  # the marker never leaves stage 2


def test_the_relay_counts_though_the_watermark_passed_the_revocation() -> None:
    """The relay comes one internal hop after stage 1's copies: here the task's
    watermark has passed the revocation's time (not yet completion + grace) when it
    arrives. A stage-1 copy that late would be late; the relay is taken as on time."""
    past = T0 + 3 * MINUTE + LATENESS + MINUTE  # upstream: the watermark is past r-1
    records = [[e] for e in before_revocation()] + [[revocation(LOST)]]
    found, stage, _ = run(records, [None, None, None, past])
    assert stage.stats.revocations_relayed == 1
    assert "SP-02" not in found


def test_without_the_relay_sp02_reports_the_revoked_credential(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fault itself: this is what the relay prevents (the tests above can fail)."""
    monkeypatch.setattr(Stage2, "_relay_revocations", lambda self, state, events: [])
    found, _, _ = run([[e] for e in [*before_revocation(), revocation(LOST)]])
    assert "SP-02" in found


def test_a_revocation_stage1_routed_is_not_relayed_again() -> None:
    routed = revocation({"task_id": "task-1"})  # the credential's hash still names it
    found, stage, _ = run([[e] for e in [*before_revocation(), routed]])
    assert "SP-02" not in found
    assert stage.stats.revocations_relayed == 0


# ---- across partitions, as a backfill delivers ------------------------------------------


def backfill(task_clock: bool = True) -> InProcess:
    """Task ``task-0`` is on stage-2 partition 0, its credential ``cred-0`` on 1 (the
    harness drains partition 0 first). Redis loses the credential's hash between the
    issuance and the revocation; then one input record brings the revocation and an
    action two hours later, which moves the frontier far past SP-02's deadline: the
    task's watermark passes the deadline before partition 1 has relayed the revocation."""
    pipe = InProcess(1, subject_partitions=2, identities=REGISTRY)
    if not task_clock:  # the fault: a task judging on its partition's watermark alone
        pipe.stage2._task_clock = lambda watermark, slowest: watermark  # type: ignore[method-assign]
    assert partition_for("task:task-0", 2) == 0 and partition_for("credential:cred-0", 2) == 1
    events = task_events("task-0", "cred-0")
    pipe.read(0, events)
    pipe.enricher.credentials.clear()  # Redis came back empty
    revoked = ev("credential.revoked", T + 90 * SECOND, credential_id="cred-0")
    pipe.read(0, [revoked, ev("action", T + 2 * HOUR, identity_id="agent-y")])
    pipe.idle({0})
    return pipe


def test_in_a_backfill_the_task_waits_for_the_relay_from_another_partition() -> None:
    pipe = backfill()
    assert pipe.stage2.stats.revocations_relayed == 1
    assert not pipe.findings("SP-02")
    # and the revocation counts as on time in the task's credential metrics
    assert pipe.late_events == 0


def test_on_the_watermark_alone_the_relay_comes_after_the_deadline() -> None:
    """The fault the task clock prevents (the test above can fail)."""
    pipe = backfill(task_clock=False)
    assert pipe.stage2.stats.revocations_relayed == 1
    assert [a["task_id"] for a in pipe.creates("SP-02")] == ["task-0"]


def test_held_back_progress_goes_out_once_due() -> None:
    """Progress that only moved ``newest`` is rate-limited; the last one of a stream
    that went quiet is sent by ``held_progress`` (the worker's once-a-second flush),
    not kept back for good: tasks and metric windows wait for it."""
    now = [1000.0]
    stage = Pipe().s
    stage.clock = lambda: now[0]
    store: dict = {}
    first = stage.process(store, 0, 0, T0, [])
    assert [(p.to, p.newest) for p in first.items if isinstance(p, Progress)] == [(0, T0)]
    now[0] += 0.1
    second = stage.process(store, 0, 1, T0 + MINUTE, [])
    assert not [p for p in second.items if isinstance(p, Progress)]  # held back
    assert stage.held_progress() == []  # not due yet
    now[0] += stage.progress_every_s
    held = stage.held_progress()
    assert [(p.to, p.source, p.newest) for p in held if isinstance(p, Progress)] == [
        (0, 0, T0 + MINUTE)
    ]
    assert stage.held_progress() == held  # until delivered (a failed send tries again)
    stage.flushed(held)
    assert stage.held_progress() == []  # sent once
    assert stage.stats.progress_flushed == 1
    now[0] += 10
    assert stage.held_progress() == []
    stage.process(store, 0, 2, T0 + 2 * MINUTE, [])  # due: goes out with the unit
    assert stage.held_progress() == []
