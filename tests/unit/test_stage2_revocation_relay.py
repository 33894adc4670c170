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
from pipeline.flow.stage2 import Stage2
from tests.unit.detectors.factory import enriched
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
