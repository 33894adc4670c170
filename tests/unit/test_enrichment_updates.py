"""Credential update planning and the merge rules (the Python twin of the Lua script)."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from pipeline.enrichment.updates import CredentialOp, merge_credential, plan_credential_ops

T = 1_700_000_000_000


def ev(event_type: str, t: int, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": f"{event_type}-{t}",
        "event_type": event_type,
        "event_time": t,
        "identity_id": "agent-1",
        "credential_id": "cred-1",
        "credential_kind": None,
        "issued_via": None,
        "scopes": None,
        "expires_at": None,
    }
    base.update(fields)
    return base


ISSUED = ev(
    "credential.issued",
    T,
    credential_kind="jit_token",
    issued_via="jit",
    scopes=["crm.read"],
    expires_at=T + 3_600_000,
)
ROTATED_1 = ev("credential.rotated", T + 1000, scopes=["crm.read", "x"], expires_at=T + 7_200_000)
ROTATED_2 = ev("credential.rotated", T + 2000, scopes=["y"], expires_at=T + 9_000_000)
REVOKED_1 = ev("credential.revoked", T + 3000)
REVOKED_2 = ev("credential.revoked", T + 4000)

EXPECTED = {
    "identity_id": "agent-1",
    "kind": "jit_token",
    "issued_via": "jit",
    "scopes": '["y"]',
    "issued_at": str(T),
    "expires_at": str(T + 9_000_000),
    "rotated_at": str(T + 2000),
    "revoked_at": str(T + 3000),
}


def run(events: list[dict[str, Any]], state: dict[str, str] | None = None) -> dict[str, str]:
    state = {} if state is None else state
    for op in plan_credential_ops(events):
        merge_credential(state, op)
    return state


def test_plan_orders_credential_events_then_one_last_used_per_credential() -> None:
    ops = plan_credential_ops(
        [
            ev("action", T + 5),
            ISSUED,
            ev("action", T + 9),
            ev("action", T + 7, credential_id="cred-2"),
            ev("action", T + 3),
            ev("approval.requested", T + 1),
            ev("action", T + 1, credential_id=None),
            ev("credential.revoked", T + 2, credential_id=None),
        ]
    )
    assert [(o.code, o.credential_id, o.time) for o in ops] == [
        ("I", "cred-1", T),
        ("U", "cred-1", T + 9),
        ("U", "cred-2", T + 7),
    ]
    issued = ops[0]
    assert issued.scopes == '["crm.read"]'
    assert issued.expires_at == str(T + 3_600_000)
    assert issued.encode(1) == [
        "I",
        1,
        str(T),
        "=agent-1",
        "=jit_token",
        "=jit",
        '=["crm.read"]',
        f"={T + 3_600_000}",
        "",
    ]


def test_issued_without_expiry_means_never_and_rotation_without_terms_gives_none() -> None:
    (issued,) = plan_credential_ops([ev("credential.issued", T)])
    assert issued.expires_at == "" and issued.encode(1)[-2] == "="
    assert issued.scopes is None and issued.encode(1)[-3] == ""
    assert issued.task_id is None and issued.encode(1)[-1] == ""
    (rotated,) = plan_credential_ops([ev("credential.rotated", T)])
    assert rotated.expires_at is None and rotated.scopes is None
    assert CredentialOp("X", "c", T).encode(3) == ["X", 3, str(T)]


def test_task_id_first_writer_wins_and_is_never_cleared() -> None:
    (op,) = plan_credential_ops([ev("credential.issued", T, task_id="task-7")])
    assert op.task_id == "task-7" and op.encode(1)[-1] == "=task-7"
    (rotated,) = plan_credential_ops([ev("credential.rotated", T, task_id="task-7")])
    assert rotated.task_id is None  # only an issuance names the task
    state = run([ev("credential.issued", T, task_id="task-7")])
    assert state["task_id"] == "task-7"
    # a later issued / rotated without task_id, or with another one, changes nothing
    run(
        [
            ev("credential.issued", T - 5, task_id=None),
            ev("credential.rotated", T + 5, task_id="task-8"),
            ev("credential.issued", T - 9, task_id="task-9"),
            ev("credential.issued", T + 9, task_id=""),
        ],
        state,
    )
    assert state["task_id"] == "task-7"
    # an issuance without task_id writes no field; a later one with task_id fills it
    state = run([ev("credential.issued", T)])
    assert "task_id" not in state
    assert run([ev("credential.issued", T + 1, task_id="task-2")], state)["task_id"] == "task-2"


def test_in_order_lifecycle_matches_the_contract() -> None:
    assert run([ISSUED, ROTATED_1, ROTATED_2, REVOKED_1, REVOKED_2]) == EXPECTED


def test_every_order_of_credential_events_gives_the_same_state() -> None:
    events = [ISSUED, ROTATED_1, ROTATED_2, REVOKED_1, REVOKED_2]
    for order in itertools.permutations(events):
        # one event per batch, as reordering across batches happens in practice
        state: dict[str, str] = {}
        for event in order:
            run([event], state)
        assert state == EXPECTED, [e["event_type"] for e in order]


def test_replay_changes_nothing() -> None:
    events = [ISSUED, ROTATED_1, REVOKED_1, ev("action", T + 50)]
    state = run(events)
    snapshot = dict(state)
    for op in plan_credential_ops(events):
        assert merge_credential(state, op) is False
    assert state == snapshot


def test_late_issued_never_unrevokes_or_rewinds() -> None:
    state = run([REVOKED_1, ROTATED_2])
    run([ISSUED], state)
    assert state["revoked_at"] == str(T + 3000)
    assert state["rotated_at"] == str(T + 2000)
    assert state["expires_at"] == str(T + 9_000_000)  # the rotation's terms stay
    assert state["identity_id"] == "agent-1" and state["issued_at"] == str(T)


def test_earliest_issuance_wins_and_a_later_one_only_fills_gaps() -> None:
    early = ev("credential.issued", T, credential_kind="api_key", issued_via=None)
    late = ev("credential.issued", T + 10, credential_kind="jit_token", issued_via="jit")
    for order in ([early, late], [late, early]):
        state: dict[str, str] = {}
        for event in order:
            run([event], state)
        assert state["issued_at"] == str(T)
        assert state["kind"] == "api_key"
        if order[0] is early:
            assert state["issued_via"] == "jit"  # gap filled by the later duplicate


def test_last_used_at_is_the_max_and_never_creates_a_hash() -> None:
    assert run([ev("action", T)]) == {}
    state = run([ISSUED, ev("action", T + 20), ev("action", T + 10)])
    assert state["last_used_at"] == str(T + 20)
    run([ev("action", T + 5)], state)
    assert state["last_used_at"] == str(T + 20)
    run([ev("action", T + 30)], state)
    assert state["last_used_at"] == str(T + 30)


def test_action_in_the_same_batch_as_issuance_is_recorded_whatever_the_order() -> None:
    state = run([ev("action", T + 5), ISSUED])
    assert state["last_used_at"] == str(T + 5)


def test_garbage_times_written_by_others_are_overwritten() -> None:
    state = {"revoked_at": "soon", "last_used_at": "", "issued_at": "n/a", "rotated_at": "x"}
    run([REVOKED_2, ev("action", T + 1), ISSUED], state)
    assert state["revoked_at"] == str(T + 4000)
    assert state["last_used_at"] == str(T + 1)
    assert state["issued_at"] == str(T)
    # a garbage rotated_at counts as no rotation, so the issuance owns the terms
    assert state["expires_at"] == str(T + 3_600_000)


@pytest.mark.parametrize("seed", range(20))
def test_random_interleavings_of_rotations_with_terms_converge(seed: int) -> None:
    rng = random.Random(seed)
    rotations = [
        ev("credential.rotated", T + k * 100, scopes=[f"s{k}"], expires_at=T + k * 1000)
        for k in range(1, 6)
    ]
    events = [ISSUED, *rotations, REVOKED_2, REVOKED_1]
    reference = run(events)
    rng.shuffle(events)
    state: dict[str, str] = {}
    for i in range(0, len(events), 2):
        run(events[i : i + 2], state)
    assert state == reference
    assert reference["scopes"] == '["s5"]' and reference["rotated_at"] == str(T + 500)


def test_event_type_may_be_an_enum_and_bad_times_are_skipped() -> None:
    from pipeline.records import EventType

    ops = plan_credential_ops(
        [
            ev(EventType.CREDENTIAL_REVOKED.value, T),
            ev("credential.revoked", T, event_time="yesterday"),
            ev("action", T, event_time=True),
        ]
    )
    assert [(o.code, o.time) for o in ops] == [("X", T)]
