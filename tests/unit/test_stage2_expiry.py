"""Bounded stage-2 state (issue 15): finished subjects expire on the watermark, their
alert ids outlive them in the partition's dedup record, a restart changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from pipeline.detectors.base import DAY, HOUR, MINUTE
from pipeline.detectors.engine import DetectionEngine
from pipeline.detectors.policy import DetectorSettings, Policy
from pipeline.detectors.sp02_not_revoked_on_completion import STATE_TTL_MS
from pipeline.flow import stage2 as stage2_module
from pipeline.flow.expiry import DEDUP_KEY, DEDUP_MAX_SUBJECTS, Horizons, stash
from pipeline.flow.route import route
from pipeline.flow.stage2 import PARTITION_KEY, REDO_KEY, Stage2, apply_writes
from tests.unit.detectors.factory import enriched
from tests.unit.test_stage2 import Store

LATENESS = 60_000
T0 = 1_764_000_000_000  # on an hour boundary: a dedup period starts here
GRACE = 300_000  # SP-02's revocation grace (the Stage2 default)


@pytest.fixture(autouse=True)
def progress_every_record(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Progress is sent at most once a wall-clock second unless ``seen`` moved; here
    every record's goes out, so the expiry clock does not depend on how fast tests run."""
    monkeypatch.setattr(stage2_module, "PROGRESS_EVERY_S", 0.0)
    yield


def stage(policy: Policy | None = None, abandoned_after_ms: int = 0) -> Stage2:
    return Stage2(
        DetectionEngine(policy), 1, LATENESS, "test", abandoned_after_ms=abandoned_after_ms
    )


class Pipe:
    """One stage-2 partition whose internal outputs (progress, notices, metric deltas)
    come back to it in its next record, as through the internal topic; expiry runs on
    the relayed progress, so it needs them."""

    def __init__(self, policy: Policy | None = None, abandoned_after_ms: int = 0) -> None:
        self.policy = policy
        self.abandoned_after_ms = abandoned_after_ms
        self.s = stage(policy, abandoned_after_ms)
        self.store = Store()
        self.back: list[Any] = []
        self.offset = 0

    def restart(self) -> None:
        self.s = stage(self.policy, self.abandoned_after_ms)  # same changelog, new worker

    def feed(self, events: list[dict], wm: int | None = None) -> Any:
        items = route(events, 1, self.s.engine.subject_kinds_for).get(0, []) if events else []
        upstream = wm if wm is not None else max(e["event_time"] for e in events)
        out = self.s.process(self.store, 0, self.offset, upstream, self.back + items)
        self.s.mark_sent(self.store, 0, self.offset)  # delivered: a restart must not re-send
        self.back = out.items
        self.offset += 1
        return out

    def advance(self, watermark: int) -> list[Any]:
        """Move the watermark to ``watermark`` and let its progress come back (the
        expiry clock); the outputs of both records."""
        return [self.feed([], wm=watermark + LATENESS) for _ in range(2)]


def subjects(store: Store) -> set[str]:
    return {k for k in store if not k.startswith(("__", "metrics:"))}


def task_events(n: int, t: int, identity: str = "agent-1") -> list[dict]:
    task, cred = f"task-{n}", f"cred-{n}"
    common = {"task_id": task, "identity_id": identity}
    return [
        enriched(
            "credential.issued",
            t,
            event_id=f"i-{n}",
            credential_id=cred,
            issued_via="jit",
            expires_at=t + HOUR,
            **common,
        ),
        enriched("action", t + 1000, event_id=f"a-{n}", credential_id=cred, **common),
        enriched("task.completed", t + 2000, event_id=f"c-{n}", **common),
        enriched("credential.revoked", t + 3000, event_id=f"r-{n}", credential_id=cred, **common),
    ]


def no_policy_action(i: int, t: int, identity: str = "agent-1") -> dict:
    return enriched("action", t, event_id=f"ev-{i}", policy_decision=None, identity_id=identity)


# ---- horizons ------------------------------------------------------------------------


def test_horizons_come_from_the_effective_specs() -> None:
    h = stage().horizons
    assert h.keep_ms("credential") == 7 * DAY + LATENESS  # SP-03's window
    assert h.keep_ms("task") == 7 * DAY + LATENESS  # SP-03's finding can name a task
    assert h.keep_ms("approver") == DAY + LATENESS  # RS-03's window
    assert h.keep_ms("approval") == DAY + LATENESS  # RS-03's finding discredits approvals
    assert h.keep_ms("requester") == 10 * MINUTE + LATENESS  # RS-07's window
    assert h.keep_ms("identity") == LATENESS  # per-event detectors only
    assert h.dedup_ms("credential") == DAY  # SP-01's day
    tuned = Policy(
        version=1, detectors={"SP-03": DetectorSettings(thresholds={"window_s": 3 * 86400})}
    )
    assert stage(tuned).horizons.keep_ms("credential") == 3 * DAY + LATENESS


def test_finished_task_expires_after_grace_and_horizon_not_before() -> None:
    pipe = Pipe()
    store = pipe.store
    pipe.feed(task_events(1, T0))
    completed = T0 + 2000
    due = completed + GRACE + pipe.s.horizons.keep_ms("task")
    assert due > completed + GRACE + STATE_TTL_MS  # SP-02's own memory ends first
    pipe.advance(due - 1)
    assert "task:task-1" in store
    outs = pipe.advance(due)
    assert "task:task-1" not in store
    tomb = [w for o in outs for w in o.writes if w[0] == "task:task-1"]
    assert tomb == [("task:task-1", None, None)]  # a tombstone in the changelog
    assert pipe.s.stats.subjects_expired >= 1


def test_unfinished_task_is_kept() -> None:
    pipe = Pipe()
    store = pipe.store
    pipe.feed(task_events(1, T0)[:2])  # issued and used, never completed
    pipe.advance(T0 + 60 * DAY)
    assert "task:task-1" in store


ABANDON = 30 * DAY


def test_unfinished_task_is_dropped_once_abandoned_not_before() -> None:
    pipe = Pipe(abandoned_after_ms=ABANDON)
    store = pipe.store
    pipe.feed(task_events(1, T0)[:2])  # issued and used, never completed
    last = T0 + 1000  # the action: the task's newest event
    pipe.advance(last + ABANDON - 1)
    assert "task:task-1" in store
    outs = pipe.advance(last + ABANDON)
    assert "task:task-1" not in store
    assert ("task:task-1", None, None) in [w for o in outs for w in o.writes]
    assert pipe.s.stats.subjects_abandoned == 1
    # the credential (expired after its hour + SP-03's week) was finished, not abandoned
    assert "credential:cred-1" not in store
    assert pipe.s.stats.subjects_expired > pipe.s.stats.subjects_abandoned


def test_abandonment_counts_from_the_newest_event() -> None:
    pipe = Pipe(abandoned_after_ms=ABANDON)
    store = pipe.store
    pipe.feed(task_events(1, T0)[:2])
    later = T0 + 20 * DAY
    pipe.feed([enriched("action", later, event_id="late-a", task_id="task-1")], wm=later)
    pipe.advance(T0 + 1000 + ABANDON)  # silent 30 days since the first action, not the last
    assert "task:task-1" in store
    pipe.advance(later + ABANDON)
    assert "task:task-1" not in store


def test_abandonment_is_never_sooner_than_the_kinds_horizon() -> None:
    pipe = Pipe(abandoned_after_ms=MINUTE)  # shorter than the task horizon (7 days)
    store = pipe.store
    pipe.feed(task_events(1, T0)[:2])
    horizon = pipe.s.horizons.keep_ms("task")
    pipe.advance(T0 + 1000 + horizon - 1)
    assert "task:task-1" in store
    pipe.advance(T0 + 1000 + horizon)
    assert "task:task-1" not in store


def test_undecided_approval_is_dropped_once_abandoned() -> None:
    pipe = Pipe(abandoned_after_ms=ABANDON)
    store = pipe.store
    requested = enriched(
        "approval.requested", T0, event_id="q-1", approval_id="ap-1", identity_id="agent-1"
    )
    pipe.feed([requested])
    pipe.advance(T0 + ABANDON - 1)
    assert "approval:ap-1" in store
    pipe.advance(T0 + ABANDON)
    assert "approval:ap-1" not in store
    assert "task:task-1" not in store  # the request's task (the factory's task-1), too
    assert pipe.s.stats.subjects_abandoned == 2


def test_revoked_credential_is_kept_for_sp03s_window() -> None:
    pipe = Pipe()
    store = pipe.store
    pipe.feed(task_events(1, T0))
    due = T0 + 3000 + 7 * DAY + LATENESS  # revoked at T0 + 3 s
    pipe.advance(due - 1)
    assert "credential:cred-1" in store
    pipe.advance(due)
    assert "credential:cred-1" not in store


def test_standing_credential_is_never_expired() -> None:
    pipe = Pipe()
    store = pipe.store
    static = enriched(
        "credential.issued", T0, event_id="i-s", credential_id="static-1", expires_at=None
    )
    pipe.feed([static])
    pipe.advance(T0 + 60 * DAY)
    assert "credential:static-1" in store


def test_decided_approval_expires_after_its_windows() -> None:
    pipe = Pipe()
    store = pipe.store
    common = {"approval_id": "ap-1", "approver": "bob", "identity_id": "agent-1"}
    requested = enriched("approval.requested", T0, event_id="q-1", **common)
    decided = enriched(
        "approval.decided", T0 + 60_000, event_id="d-1", decision="approve", **common
    )
    pipe.feed([requested, decided])
    due = T0 + 60_000 + DAY + LATENESS
    pipe.advance(due - 1)
    assert "approval:ap-1" in store
    pipe.advance(due)
    assert "approval:ap-1" not in store


def test_idle_approver_expires_after_rs03s_day() -> None:
    pipe = Pipe()
    store = pipe.store
    common = {"approval_id": "ap-1", "approver": "bob", "identity_id": "agent-1"}
    decided = enriched("approval.decided", T0, event_id="d-1", decision="approve", **common)
    pipe.feed([decided])
    pipe.advance(T0 + DAY + LATENESS - 1)
    assert "approver:bob" in store
    pipe.advance(T0 + DAY + LATENESS)
    assert "approver:bob" not in store


# ---- the dedup record ----------------------------------------------------------------


def test_expired_subject_returning_inside_the_dedup_period_is_an_update() -> None:
    pipe = Pipe()
    store = pipe.store
    first = pipe.feed([no_policy_action(1, T0 + 1000)])
    (created,) = [a for a in first.alerts if a["detector"] == "AZ-01"]
    assert created["activity_id"] == 1
    pipe.advance(T0 + 20 * MINUTE)
    assert "identity:agent-1" not in store  # idle past its horizon: expired
    record = store[DEDUP_KEY.format(0)]
    assert created["alert_id"] in record["s"]["identity:agent-1"][1]
    # back 30 minutes later, inside the same hour: the same incident
    back = pipe.feed([no_policy_action(2, T0 + 30 * MINUTE)])
    (again,) = [a for a in back.alerts if a["detector"] == "AZ-01"]
    assert again["alert_id"] == created["alert_id"]
    assert again["activity_id"] == 2 and again["count"] == 2
    assert again["finding_info"]["first_seen_time"] == T0 + 1000
    assert "identity:agent-1" not in store.get(DEDUP_KEY.format(0), {}).get("s", {})


def test_the_record_drops_an_id_when_its_period_ends() -> None:
    pipe = Pipe()
    store = pipe.store
    first = pipe.feed([no_policy_action(1, T0 + 1000)])
    (created,) = [a for a in first.alerts if a["detector"] == "AZ-01"]
    pipe.advance(T0 + 20 * MINUTE)
    assert DEDUP_KEY.format(0) in store
    pipe.advance(T0 + 1000 + HOUR)  # first seen + the dedup period: past its end
    assert DEDUP_KEY.format(0) not in store  # emptied: deleted too
    # a new hour is a new incident: a Create with another id
    later = pipe.feed([no_policy_action(2, T0 + HOUR + 2 * MINUTE)])
    (new,) = [a for a in later.alerts if a["detector"] == "AZ-01"]
    assert new["activity_id"] == 1 and new["alert_id"] != created["alert_id"]


def test_the_record_is_bounded() -> None:
    h = Horizons({}, {"identity": HOUR}, LATENESS)
    record: dict[str, Any] = {}
    for i in range(DEDUP_MAX_SUBJECTS + 50):
        state = {"_alerts": {f"a{i}": [1, T0 + i, T0 + i]}}
        stash(record, f"identity:x{i}", state, h, T0)
    assert len(record["s"]) == DEDUP_MAX_SUBJECTS
    assert (
        "identity:x0" not in record["s"] and f"identity:x{DEDUP_MAX_SUBJECTS + 49}" in record["s"]
    )
    assert record["next"] == T0 + 50 + HOUR


# ---- over a long stream --------------------------------------------------------------


def stream(days: int, per_hour: int = 4) -> list[tuple[int, list[dict]]]:
    """Records of a month-like stream: per hour ``per_hour`` tasks (each with its own
    credential, revoked on completion) of a pool of agents, and AZ-01 findings of
    another pool. Metric windows are kept per identity (not expired): the pools keep
    them bounded, as a registry's population does."""
    out: list[tuple[int, list[dict]]] = []
    n = 0
    for hour in range(days * 24):
        t = T0 + hour * HOUR
        events: list[dict] = []
        for k in range(per_hour):
            n += 1
            events += task_events(n, t + k * 60_000, identity=f"agent-{n % 11}")
            events.append(no_policy_action(n, t + k * 60_000 + 5000, identity=f"pool-{n % 7}"))
        out.append((t + HOUR, events))
    return out


def heap_entries(s: Stage2) -> int:
    """Entries in the stage's timer heaps (stale copies included), all partitions."""
    heaps = (s._timers, s._task_timers, s._metric_timers, s._expiries)
    return sum(len(h) for timers in heaps for h in timers.values())


def run_stream(
    records: list[tuple[int, list[dict]]], restart_every: int = 0, heaps: list[int] | None = None
) -> tuple[Any, ...]:
    """Feed ``records``; the alerts, the store, and its size each simulated day (with
    ``heaps``, the timer heaps' entries each day too)."""
    pipe = Pipe()
    alerts: list[dict] = []
    sizes: list[int] = []
    for offset, (wm, events) in enumerate(records):
        if restart_every and offset % restart_every == 0:
            pipe.restart()
        alerts += pipe.feed(events, wm=wm).alerts
        if offset % 24 == 23:
            sizes.append(len(pipe.store))
            if heaps is not None:
                heaps.append(heap_entries(pipe.s))
    return alerts, pipe.store, sizes


def test_state_stays_bounded_over_a_long_stream() -> None:
    heaps: list[int] = []
    alerts, _, sizes = run_stream(stream(days=21), heaps=heaps)
    # warm-up: revoked credentials and finished tasks are kept 7 days (SP-03); then flat
    after = sizes[8:]
    assert max(after) <= min(after) * 1.1, sizes
    # and so are the in-memory timer heaps (a metric key's stale timer copies once came
    # back at each later deadline: the heap grew for as long as the worker ran)
    assert max(heaps[8:]) <= min(heaps[8:]) * 1.1, heaps
    assert max(sizes) < 21 * 24 * 4  # far below one entry per task ever seen
    created = [a["alert_id"] for a in alerts if a["activity_id"] == 1]
    assert len(created) == len(set(created))  # never a second Create


def test_a_restart_behaves_identically() -> None:
    records = stream(days=10)
    alerts, store, _ = run_stream(records)
    again, store2, _ = run_stream(records, restart_every=7)
    assert [orjson.dumps(a) for a in again] == [orjson.dumps(a) for a in alerts]
    assert store2 == store


def test_a_crash_after_the_partition_entry_redoes_the_deletions() -> None:
    """The per-subject writes (tombstones included) lost after the partition entry:
    the restart restores them from the redo chunks and goes on as if nothing happened."""
    records = stream(days=10)
    alerts, store, _ = run_stream(records)
    s, crashed = stage(), Store()
    got: list[dict] = []
    back: list[Any] = []
    lost = 0
    for offset, (wm, events) in enumerate(records):
        items = back + route(events, 1, s.engine.subject_kinds_for).get(0, [])
        out = s.process_unit(crashed, 0, [(offset, wm, items)])
        # deletions of subjects the store holds (some are created and expire in one unit)
        tombs = [w for w in out.writes if w[2] is None and w[0] in crashed]
        if tombs and not lost:
            cut = next(i for i, w in enumerate(out.writes) if w[0] == PARTITION_KEY.format(0))
            apply_writes(crashed, out.writes[: cut + 1])  # redo + entry only
            assert REDO_KEY.format(0, 0) in crashed
            s = stage()
            lost += 1
            back = []
            continue  # its outputs were never delivered: the restart re-sends them
        got += out.alerts
        back = out.items
        apply_writes(crashed, out.writes)
        s.mark_sent(crashed, 0, offset)
    assert lost == 1

    # The same alerts, each once with the same activity and count. Not in the same order:
    # a task's timers wait for the progress every partition relays (stage2._task_clock), and
    # the restart relays it again one record later, so AT-02's alerts come a record later.
    def key(a: dict) -> tuple[str, int, int]:
        return (a["alert_id"], a["activity_id"], a["count"])

    assert sorted(map(key, got)) == sorted(map(key, alerts))
    assert {k: v for k, v in crashed.items() if not k.startswith("__")} == {
        k: v for k, v in store.items() if not k.startswith("__")
    }
