"""Issue 14's must-show, through the real broker, Redis, worker and `govpipe trace`.

A task started for a human (alice) by agent A, delegated to agent B with a subset of
A's scopes; B is issued a JIT credential; an approval is viewed and decided; four
actions, one denied by policy with a reason; B's credential is revoked late. The
worker publishes the task's dossier at completion and revises it when the late
revocation and then the SP-02 finding arrive; `govpipe trace task ID --json` (the
real CLI, a subprocess) prints the newest revision, compared element by element with
an expectation written by hand from the scenario (``expected_must_show`` of the
dossier's unit tests, findings computed here from the alert contract). A clean task
beside it shows every verdict green.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from pipeline.codec import AvroEncoder
from pipeline.evidence.codec import EvidenceCodec
from pipeline.settings import Settings, settings_env
from tests.support.kafka import consume_until_quiet, produce
from tests.support.scenario import clear_registry, load_registry
from tests.unit.evidence import _scenario as sc
from tests.unit.evidence.test_dossier import expected_must_show

pytestmark = pytest.mark.integration

S = 1000
MINUTE = 60 * S
CLEAN = "task-clean"
#: docs/contracts/alerts.md: alert ids are UUIDv5 in this namespace; SP-02 is windowed,
#: its subject the task and its window start the completion
NAMESPACE = uuid.UUID("6f1d3a52-6c55-5b0e-9a57-3c8f1c2b7a10")
SP02_ID = str(uuid.uuid5(NAMESPACE, f"SP-02|{sc.TASK}|{sc.COMPLETED}"))
#: SP-02's controls, as the README's detection table lists them ("FRAMEWORK control")
SP02_FRAMEWORKS = sorted(
    [
        "OWASP-NHI NHI-07",
        "OWASP-NHI NHI-01",
        "NIST-CSF-2.0 PR.AA-01",
        "NIST-CSF-2.0 PR.AA-05",
        "NIST-AI-RMF MANAGE 2.4",
        "CSA-MAESTRO L4 Deployment and Infrastructure",
    ]
)
REGISTRY: list[dict[str, Any]] = [
    {
        "identity_id": sc.A,
        "kind": "ai_agent",
        "owner": "bob@example.com",
        "team": "sales-ops",
        "environment": "prod",
        "risk_tier": "high",
        "allowed_scopes": ["crm.read", "crm.write", "crm.export"],
        "status": "active",
    },
    {
        "identity_id": sc.B,
        "kind": "ai_agent",
        "owner": "bob@example.com",
        "team": "sales-ops",
        "environment": "prod",
        "risk_tier": "medium",
        "allowed_scopes": ["crm.read"],
        "status": "active",
        "mode": "assistant",
    },
    {"identity_id": "bob@example.com", "kind": "human", "owner": "bob@example.com"},
]


def raw(event: dict[str, Any]) -> dict[str, Any]:
    """An input-contract event: stage 1 adds the registry views itself; no nulls. The
    denied action uses a scope B holds: denied by policy, not out of B's scopes."""
    out = {k: v for k, v in event.items() if k not in ("identity", "credential")}
    if out["event_id"] == "e-act-4":
        out["scope"] = "crm.read"
    return {k: v for k, v in out.items() if v is not None}


def clean_task() -> list[dict[str, Any]]:
    """The same work done properly under other ids: no denied action, both credentials
    revoked within the grace."""
    names = {sc.CRED_A: "cred-clean-a", sc.CRED_B: "cred-clean-b", sc.APPROVAL: "ap-clean"}
    out = []
    events = [e for e in sc.events() if e["event_id"] != "e-act-4"]
    events.append(dict(sc.late_revocation(), event_time=sc.COMPLETED + 20 * S, task_id=sc.TASK))
    for e in events:
        e = raw(e)
        e["event_id"] = f"clean-{e['event_id']}"
        if e.get("parent_event_id"):
            e["parent_event_id"] = f"clean-{e['parent_event_id']}"
        if e.get("task_id"):
            e["task_id"] = CLEAN
        for field in ("credential_id", "approval_id"):
            if e.get(field) in names:
                e[field] = names[e[field]]
        out.append(e)
    return out


def moves_time(t: int, n: int) -> dict[str, Any]:
    """Traffic of another task: event time moves on (heartbeat)."""
    return raw(sc.event(f"beat-{n}", "task.started", t, identity_id=sc.A, task_id=f"beat-{n}"))


def dossiers(settings: Settings, task: str) -> list[dict[str, Any]]:
    """Every record of ``task`` on the evidence topic, in offset order."""
    codec = EvidenceCodec(topic=settings.topic_evidence)
    records = consume_until_quiet(settings.kafka_bootstrap_servers, settings.topic_evidence, 2)
    return [
        codec.decode(r.value)
        for r in sorted(records, key=lambda r: (r.partition, r.offset))
        if r.value is not None and r.key == task.encode()
    ]


def wait_for(
    settings: Settings, task: str, done: Callable[[dict[str, Any]], bool], what: str
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        records = dossiers(settings, task)
        if records and done(records[-1]):
            return records
        time.sleep(1)
    raise AssertionError(f"{task}: no dossier {what} within 120 s: {records[-1:]}")


def trace(settings: Settings, task: str) -> dict[str, Any]:
    """`govpipe trace task TASK --json`, the real command in a process of its own."""
    env = {**os.environ, **settings_env(settings)}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "trace", "task", task, "--json", "--idle", "2"],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    (only,) = orjson.loads(done.stdout)["tasks"]
    return dict(only)


def trace_alert(settings: Settings, alert_id: str) -> str:
    """`govpipe trace alert ALERT_ID`, the terminal view a reviewer reads."""
    env = {**os.environ, **settings_env(settings), "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "trace", "alert", alert_id, "--idle", "2"],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return done.stdout.decode()


def test_trace_shows_the_must_show_task_as_it_happened(
    settings_factory, worker_factory, redis_url
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}:nhi:"
    settings = settings_factory(redis_key_prefix=prefix, idle_partition_s=2.0)
    load_registry(redis_url, prefix, REGISTRY)
    enc = AvroEncoder()
    bootstrap = settings.kafka_bootstrap_servers
    try:
        # 1. the task and the clean one, up to B's revocation (which has not come yet)
        events = [raw(e) for e in sc.events()] + clean_task()
        produce(bootstrap, settings.topic_events, [enc.batch(events)], partition=0)
        worker = worker_factory(settings).start(timeout=90)
        first = wait_for(settings, sc.TASK, lambda d: d["completed_at"] is not None, "at all")
        assert first[0]["revision"] == 0
        assert first[0]["pending"] == ["revocation_grace"]
        assert first[0]["verdicts"]["revoked_on_completion"] is None
        # 2. B's credential revoked late: a new revision with the revocation in it
        produce(bootstrap, settings.topic_events, [enc.event(raw(sc.late_revocation()))], 0)
        revoked = wait_for(
            settings,
            sc.TASK,
            lambda d: d["credentials"][1]["revoked_at"] == sc.LATE_REVOCATION,
            "with the late revocation",
        )
        # 3. event time moves past completion + grace + lateness: SP-02 fires
        beats = [moves_time(sc.LATE_REVOCATION + m * MINUTE, m) for m in (10, 20)]
        for beat in beats:
            produce(bootstrap, settings.topic_events, [enc.event(beat)], partition=0)
            time.sleep(2)
        final = wait_for(settings, sc.TASK, lambda d: bool(d["findings"]), "with SP-02")
        wait_for(settings, CLEAN, lambda d: not d["pending"], "judged")
        assert worker.alive(), worker.log_text()[-3000:]
        traced = trace(settings, sc.TASK)
        clean = trace(settings, CLEAN)
        behind_alert = trace_alert(settings, SP02_ID)
    finally:
        clear_registry(redis_url, prefix)

    # The alert the worker raised leads to its task and the chain up to the human.
    lines = behind_alert.splitlines()
    assert lines[0].startswith(f"task {sc.TASK} "), behind_alert
    assert f"{sc.HUMAN} (human principal)" in behind_alert
    assert "agent-a → agent-b [crm.read]" in behind_alert
    assert any(line.strip().startswith(f"SP-02 medium  {SP02_ID}") for line in lines), behind_alert
    assert "✘ revoked on completion" in behind_alert

    # Revisions: 0, 1, … without gaps; the revocation and then the finding each raised it.
    revisions = [d["revision"] for d in final]
    assert revisions == list(range(len(revisions))), revisions
    at_revocation = revoked[-1]["revision"]
    at_finding = next(d["revision"] for d in final if d["findings"])
    assert 0 < at_revocation < at_finding <= final[-1]["revision"]
    assert not revoked[-1]["findings"]

    # The newest revision, as the CLI prints it, element by element.
    dossier = traced["dossier"]
    assert dossier["revision"] == final[-1]["revision"]
    want = expected_must_show()
    want["findings"] = [
        {
            "alert_id": SP02_ID,
            "detector": "SP-02",
            "severity": "medium",
            "time": sc.COMPLETED,
            "count": 1,
            "frameworks": SP02_FRAMEWORKS,
        }
    ]
    assert set(dossier) == {*want, "revision", "emitted_at"}
    for key, value in want.items():
        if isinstance(value, list):
            assert len(dossier[key]) == len(value), key
            for i, (got, expected) in enumerate(zip(dossier[key], value, strict=True)):
                assert got == expected, f"{key}[{i}]"
        elif isinstance(value, dict):
            for name in value:
                assert dossier[key][name] == value[name], f"{key}.{name}"
            assert set(dossier[key]) == set(value), key
        else:
            assert dossier[key] == value, key
    chain = traced["chain"]
    assert chain["complete"] is True and chain["human"] == sc.HUMAN
    assert [link["task_id"] for link in chain["links"]] == [sc.TASK]

    # The clean task: every verdict green, nothing pending, nothing found.
    assert clean["dossier"]["findings"] == [] and clean["dossier"]["pending"] == []
    assert clean["dossier"]["verdicts"] == {
        "succeeded": True,
        "safe": True,
        "authorised": True,
        "attributable": True,
        "ephemeral": True,
        "revoked_on_completion": True,
        "approved_meaningfully": True,
    }
