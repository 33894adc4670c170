"""SP-02 task credential not revoked on completion (watermark-driven absence)."""

from __future__ import annotations

from pipeline.detectors.base import DAY, MINUTE
from pipeline.detectors.sp02_not_revoked_on_completion import DETECTOR, STATE_TTL_MS

from .factory import T0, enriched, run

DONE = T0 + 10 * MINUTE
DEADLINE = DONE + 5 * MINUTE


def task(*extra: dict[str, object]) -> list[dict[str, object]]:
    return [
        enriched("credential.issued", T0, expires_at=T0 + DAY),
        enriched("task.completed", DONE),
        *extra,
    ]


def test_unrevoked_credential_fires_when_watermark_passes_deadline() -> None:
    states: dict[str, dict[str, object]] = {}
    assert run(DETECTOR, task(), watermark=DEADLINE - 1, states=states) == []
    assert states["task-1"]["_deadline"] == DEADLINE
    [f] = run(DETECTOR, [], watermark=DEADLINE, states=states)
    assert f.subject == "task-1" and f.context["credential_id"] == "cred-1"
    assert f.facts["unrevoked_credential_ids"] == ["cred-1"] and f.facts["grace_s"] == 300
    assert (f.window_start, f.window_end, f.time) == (DONE, DEADLINE, DEADLINE)


def test_revoked_within_grace_is_clean() -> None:
    assert (
        run(DETECTOR, task(enriched("credential.revoked", DONE + MINUTE)), watermark=DAY + T0) == []
    )


def test_edge_revoked_exactly_at_deadline_clean_one_ms_later_fires() -> None:
    at = task(enriched("credential.revoked", DEADLINE))
    assert run(DETECTOR, at, watermark=DEADLINE) == []
    late = task(enriched("credential.revoked", DEADLINE + 1))
    assert len(run(DETECTOR, late, watermark=DEADLINE + 1)) == 1


def test_expired_by_deadline_is_not_live() -> None:
    events = [
        enriched("credential.issued", T0, expires_at=DEADLINE),
        enriched("task.completed", DONE),
    ]
    assert run(DETECTOR, events, watermark=DEADLINE) == []


def test_revocation_routed_by_credential_task_id() -> None:
    revoke = enriched(
        "credential.revoked", DONE + 1, task_id=None, credential={"task_id": "task-1"}
    )
    assert run(DETECTOR, task(revoke), watermark=DEADLINE) == []


def test_only_unrevoked_credentials_are_listed() -> None:
    events = task(
        enriched("credential.issued", T0, credential_id="cred-2"),
        enriched("credential.revoked", DONE, credential_id="cred-2"),
        enriched("credential.issued", T0 + 1, credential_id="cred-3"),
    )
    [f] = run(DETECTOR, events, watermark=DEADLINE)
    assert f.facts["unrevoked_credential_ids"] == ["cred-1", "cred-3"]
    assert f.facts["credentials_issued"] == 3 and f.facts["revoked_in_time"] == 1


def test_replay_after_judgement_changes_nothing() -> None:
    states: dict[str, dict[str, object]] = {}
    assert len(run(DETECTOR, task(), watermark=DEADLINE, states=states)) == 1
    assert run(DETECTOR, task(), watermark=DEADLINE + 1, states=states) == []


def test_uncompleted_task_state_is_dropped_after_ttl() -> None:
    states: dict[str, dict[str, object]] = {}
    run(DETECTOR, [enriched("credential.issued", T0)], watermark=T0, states=states)
    assert states["task-1"]["_deadline"] == T0 + STATE_TTL_MS
    assert run(DETECTOR, [], watermark=T0 + STATE_TTL_MS, states=states) == []
    assert states["task-1"] == {}


def test_grace_override() -> None:
    assert run(DETECTOR, task(), watermark=DEADLINE, thresholds={"grace_s": 301}) == []
