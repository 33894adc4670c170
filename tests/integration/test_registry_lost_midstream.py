"""A Redis that comes back empty in the middle of a stream (issue 15 item 2).

A Redis without persistence that restarts loses everything at once: the identity
hashes, the registry marker and the credential state stage 1 wrote from
``credential.issued`` events. ``FLUSHDB`` of the test's own database is that loss
without the outage around it (an outage alone is tests/integration/test_redis_outage.py).
The stream goes on through the gap and after ``govpipe identities load``; the contract
(docs/operations.md#govpiperegistrynotready): nothing is dropped, the worker says it is
degraded and recovers by itself, the registry detectors raise nothing on the gap's
events, and no finding rests on the lost credential state once the registry is back.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis

from pipeline.codec import encode_json_batch
from pipeline.flow.route import copies as subject_copies
from pipeline.flow.route import decode_subject_batch
from tests.integration.test_observability import scrape, wait_for
from tests.integration.test_registry_ready import NEEDS_REGISTRY, load_registry, wait_health
from tests.support.events import make_event
from tests.support.kafka import consume_until_quiet, produce

pytestmark = pytest.mark.integration

REGISTRY = (
    "identities:\n"
    "  - {identity_id: alice, kind: human, team: t}\n"
    "  - {identity_id: agent-ok, kind: ai_agent, owner: alice, team: t,"
    " allowed_scopes: [crm.read]}\n"
    "  - {identity_id: agent-b, kind: ai_agent, owner: alice, team: t,"
    " allowed_scopes: [crm.read]}\n"
    "  - {identity_id: agent-off, kind: ai_agent, owner: alice, team: t, status: offboarded}\n"
    "  - {identity_id: agent-orphan, kind: service_account, team: t}\n"
)
MINUTE = 60_000


class Stream:
    """Events with increasing event times from one start, all to input partition 0
    (the other partitions go idle, so the watermark follows these events)."""

    def __init__(self, start_ms: int) -> None:
        self.t = start_ms
        self.sent: list[dict[str, Any]] = []

    def event(self, event_type: str, **fields: Any) -> dict[str, Any]:
        self.t += 10
        event = make_event(
            0,
            event_id=str(uuid.uuid4()),
            event_type=event_type,
            event_time=self.t,
            identity_id="agent-ok",
            credential_id=None,
            task_id=None,
            sensitivity="low",
        )
        event.update(fields)
        return event

    def send(self, bootstrap: str, topic: str, events: list[dict[str, Any]]) -> None:
        produce(bootstrap, topic, [encode_json_batch(events)], partition=0)
        self.sent += events


def issued(s: Stream, credential: str, task: str, who: str = "agent-ok") -> dict[str, Any]:
    """A JIT credential for ``task``, 30 minutes long (within SP-01's hour for an agent)."""
    return s.event(
        "credential.issued",
        identity_id=who,
        credential_id=credential,
        task_id=task,
        issued_via="jit",
        credential_kind="jit_token",
        scopes=["crm.read"],
        expires_at=s.t + 30 * MINUTE,
    )


def uses(s: Stream, credential: str, task: str, who: str = "agent-ok") -> dict[str, Any]:
    """A sensitive action (SP-05 judges its credential) in scope (SP-04)."""
    return s.event(
        "action", identity_id=who, credential_id=credential, task_id=task, sensitivity="high"
    )


def unattributable(s: Stream, who: str) -> dict[str, Any]:
    """An action AT-01 (unknown), SP-06 (offboarded) or SP-08 (no owner) judges, with no
    policy decision: AZ-01 fires on it too, and needs no registry."""
    return s.event("action", identity_id=who, policy_decision=None)


def alerts(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    return [
        json.loads(r.value)
        for r in consume_until_quiet(bootstrap, topic, quiet_s=2, max_s=30)
        if r.value is not None
    ]


def test_redis_emptied_mid_stream_loses_nothing_and_judges_nothing_on_lost_state(
    settings_factory: Any,
    worker_factory: Any,
    redis_url: str,
    tmp_path: Path,
    capsys: Any,
) -> None:
    started = time.monotonic()
    prefix = f"t{uuid.uuid4().hex[:8]}:nhi:"
    registry = tmp_path / "identities.yaml"
    registry.write_text(REGISTRY)
    load_registry(registry, redis_url, prefix)
    settings = settings_factory(redis_key_prefix=prefix, idle_partition_s=2.0)
    worker = worker_factory(settings).start()
    port, bootstrap, topic = (
        settings.web_port,
        settings.kafka_bootstrap_servers,
        settings.topic_events,
    )
    wait_health(port, "OK")
    s = Stream(int(time.time() * 1000))

    # 1. Before the loss: task A gets a JIT credential (its issuance, with task A, is
    # written to Redis by stage 1) and uses it.
    s.send(
        bootstrap,
        topic,
        [
            s.event("task.started", task_id="task-A"),
            issued(s, "cred-A", "task-A"),
            uses(s, "cred-A", "task-A"),
        ],
    )
    wait_for(port, 'govpipe_events_out_total{stage="1"}', len(s.sent))

    # 2. Redis loses everything: identities, the marker, cred-A's issuance.
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.exists(f"{prefix}credential:cred-A")
        client.flushdb()
    finally:
        client.close()
    lost = time.monotonic()
    body = wait_health(port, "DEGRADED", timeout=20)
    degraded_after = time.monotonic() - lost
    assert f"marker {prefix}registry absent" in body["reasons"][0], body
    assert "govpipe identities load FILE" in body["reasons"][0], body
    assert scrape(port)["govpipe_registry_ready"] == 0

    # 3. The stream goes on through the gap.
    gap = [
        unattributable(s, "ghost-1"),
        unattributable(s, "agent-off"),
        unattributable(s, "agent-orphan"),
        uses(s, "cred-A", "task-A"),
    ]
    s.send(bootstrap, topic, gap)
    wait_for(port, "govpipe_registry_gap_events_total", len(gap))
    assert scrape(port)["govpipe_registry_ready"] == 0

    # 4. The registry is loaded again (the file; nothing restores cred-A's issuance).
    load_registry(registry, redis_url, prefix)
    loaded = time.monotonic()
    body = wait_health(port, "OK", timeout=20)
    recovered_after = time.monotonic() - loaded
    assert body["registry"]["generation"] == 1  # the counter was lost with the rest
    assert scrape(port)["govpipe_registry_ready"] == 1

    # 5. After the load: cred-A is used and revoked by a producer that does not repeat
    # the task on the revocation (the contract lets it: the credential's issuance says
    # which task), task A completes; task B, its control, keeps its credential live.
    # The registry detectors fire again on new events.
    after = [
        uses(s, "cred-A", "task-A"),
        s.event("credential.revoked", credential_id="cred-A"),
        s.event("task.completed", task_id="task-A"),
        s.event("task.started", identity_id="agent-b", task_id="task-B"),
        issued(s, "cred-B", "task-B", "agent-b"),
        uses(s, "cred-B", "task-B", "agent-b"),
        s.event("task.completed", identity_id="agent-b", task_id="task-B"),
        unattributable(s, "ghost-2"),
        unattributable(s, "agent-off"),
        unattributable(s, "agent-orphan"),
    ]
    # As a backfill brings them: in the same input record, an action 10 minutes later,
    # so event time passes completion + SP-02's grace in the record that completes task
    # A, before cred-A's subject has relayed the revocation. The task judges on the
    # slower of its watermark and every partition's relayed progress (the task clock),
    # so the relay still counts; on the watermark alone, SP-02 fired here.
    s.t += 10 * MINUTE
    after.append(s.event("action"))
    s.send(bootstrap, topic, after)
    # Event time moves on: the tasks are judged.
    for minutes in (10, 20):
        s.t += minutes * MINUTE
        s.send(bootstrap, topic, [s.event("action")])
        time.sleep(1)

    deadline = time.monotonic() + 40
    while True:
        found = alerts(bootstrap, settings.topic_alerts)
        fired = {
            (a["detector"], str(a[f]))
            for a in found
            for f in ("identity_id", "task_id")
            if a.get(f)
        }
        if {("SP-02", "task-B"), ("AT-01", "ghost-2"), ("SP-06", "agent-off")} <= fired and (
            "SP-08",
            "agent-orphan",
        ) in fired:
            break
        assert time.monotonic() < deadline, sorted(fired)
        time.sleep(1)

    # Nothing lost or doubled end to end: every event reached stage 2 once.
    forwarded: Counter[str] = Counter()
    for rec in consume_until_quiet(bootstrap, settings.topic_subjects, quiet_s=2, expect=1):
        assert rec.value is not None
        _, items = decode_subject_batch(rec.value)
        forwarded.update(c.event["event_id"] for c in subject_copies(items) if c.primary)
    samples = scrape(port)
    creates = Counter(a["alert_id"] for a in found if a["activity_name"] == "Create")
    gap_ids = {e["identity_id"] for e in gap}
    on_gap = sorted(
        (a["detector"], a.get("identity_id"))
        for a in found
        if set(a["evidence"]["event_ids"]) & {e["event_id"] for e in gap}
        and a["detector"] in NEEDS_REGISTRY
    )
    with capsys.disabled():
        print(
            f"\n[registry lost mid-stream] {len(s.sent)} events, {len(forwarded)} forwarded, "
            f"{len({e['event_id'] for e in s.sent} - set(forwarded))} missing, "
            f"{sum(n - 1 for n in forwarded.values())} repeats; "
            f"{samples['govpipe_registry_gap_events_total']:.0f} gap events counted; "
            f"degraded {degraded_after:.1f} s after the FLUSHDB, OK {recovered_after:.1f} s "
            f"after the load; alerts {sorted(fired)}; "
            f"{time.monotonic() - started:.0f} s in all"
        )
    assert set(forwarded) == {e["event_id"] for e in s.sent}, "events lost"
    assert max(forwarded.values()) == 1
    assert not any(k.startswith("govpipe_dlq_records_total") and v for k, v in samples.items())
    assert samples["govpipe_registry_gap_events_total"] == len(gap)
    assert max(creates.values()) == 1, creates
    # The gap's events: every one still reaches the detectors that need no registry...
    for who in gap_ids - {"agent-ok"}:
        assert ("AZ-01", who) in fired, sorted(fired)
    # ...and none of the registry's detectors judged them.
    assert not on_gap, on_gap
    assert ("AT-01", "ghost-1") not in fired, sorted(fired)
    log = worker.log_text()
    assert log.count("identity registry not ready") == 1, log[-3000:]
    assert log.count("identity registry ready again") == 1, log[-3000:]
    assert worker.alive()
    # No finding on lost credential state: cred-A was revoked before task A completed,
    # and nothing else about task A or its identity is wrong.
    # cred-A's revocation carries no task_id and Redis lost the credential's task: the
    # credential's stage-2 subject, which saw the issuance, relays it to task A, so SP-02
    # does not report it live (it did before the relay: Stage2._relay_revocations).
    assert not {d for d, subject in fired if subject in {"task-A", "agent-ok"}}, sorted(fired)
    assert samples["govpipe_revocations_relayed_total"] == 1
