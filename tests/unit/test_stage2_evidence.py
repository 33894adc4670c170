"""Stage 2 publishes task dossiers (docs/contracts/evidence.md), in process.

Raw input events of the must-show task (``tests/unit/evidence/_scenario.py``, with
the denied action inside B's scopes) go through stage 1 (enrichment from an
in-memory registry, routing) and stage 2 (``tests/support/inprocess.py``): every
event of the task reaches the task subject, also with AT-02 and SP-02 switched off;
the dossier is published at completion and revised when the late revocation and the
SP-02 finding arrive; a re-sent unit re-sends the same revision; the state is dropped
at ``forget_at``.
"""

from __future__ import annotations

import uuid
from typing import Any

from pipeline.detectors.policy import parse_policy
from pipeline.evidence import EvidenceThresholds
from pipeline.flow import dossiers
from pipeline.flow.stage2 import PARTITION_KEY
from tests.support.inprocess import InProcess
from tests.unit.evidence import _scenario as sc
from tests.unit.evidence.test_dossier import expected_must_show

S = 1000
MINUTE = 60 * S
#: docs/contracts/alerts.md: the alert id namespace; SP-02's window starts at completion
NAMESPACE = uuid.UUID("6f1d3a52-6c55-5b0e-9a57-3c8f1c2b7a10")
SP02_ID = str(uuid.uuid5(NAMESPACE, f"SP-02|{sc.TASK}|{sc.COMPLETED}"))
#: SP-02's framework controls as the README's detection table lists them
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

REGISTRY: dict[str, dict[str, Any]] = {
    who: {k: v for k, v in sc.IDENTITIES[who].items() if k not in ("known", "owner_status")}
    for who in (sc.A, sc.B)
}
REGISTRY["bob@example.com"] = {"kind": "human", "owner": "bob@example.com", "status": "active"}


def raw(event: dict[str, Any]) -> dict[str, Any]:
    """The input contract's event: no enrichment views (stage 1 adds them), no nulls;
    the denied action uses a scope B holds (denied by policy, not out of scope)."""
    out = {k: v for k, v in event.items() if k not in ("identity", "credential")}
    if out["event_id"] == "e-act-4":
        out["scope"] = "crm.read"
    return {k: v for k, v in out.items() if v is not None}


def later(t: int) -> dict[str, Any]:
    """An event of another task that moves the watermark."""
    return raw(sc.event(f"e-later-{t}", "task.started", t, identity_id=sc.A, task_id="other"))


def run(pipe: InProcess) -> list[dict[str, Any]]:
    pipe.read(0, [raw(e) for e in sc.events()])
    pipe.read(0, [raw(sc.late_revocation())])
    pipe.read(0, [later(sc.LATE_REVOCATION + 20 * MINUTE)])
    pipe.idle({0}, seconds=3600)
    return [r for r in pipe.evidence if r["task_id"] == sc.TASK]


def test_the_dossier_is_published_and_revised_by_the_revocation_and_the_finding() -> None:
    records = run(InProcess(1, identities=REGISTRY))
    revisions = [r["revision"] for r in records]
    assert revisions == list(range(len(revisions))) and len(revisions) >= 3
    first, last = records[0], records[-1]
    assert first["pending"] == ["revocation_grace"] and first["verdicts"]["safe"] is True
    assert first["findings"] == []
    with_revocation = next(i for i, r in enumerate(records) if r["credentials"][1]["revoked_at"])
    with_sp02 = next(i for i, r in enumerate(records) if r["findings"])
    assert 0 < with_revocation and 0 < with_sp02
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
    assert set(last) == {*want, "revision", "emitted_at"}
    for key in want:
        assert last[key] == want[key], key


def test_every_event_of_the_task_reaches_it_with_its_detectors_off() -> None:
    off = parse_policy(
        "version: 1\ndetectors:\n  AT-02: {enabled: false}\n  SP-02: {enabled: false}\n"
    )
    records = run(InProcess(1, identities=REGISTRY, policy=off))
    last = records[-1]
    want = expected_must_show()
    for key in ("delegations", "credentials", "approvals", "actions", "actors", "initiator"):
        assert last[key] == want[key], key
    assert last["findings"] == []  # SP-02 is off: nothing found


def test_without_evidence_no_dossier_and_no_state() -> None:
    pipe = InProcess(1, identities=REGISTRY, evidence=False)
    run(pipe)
    assert pipe.evidence == []
    assert not any(dossiers.EV in (v or {}) for k, v in pipe.store.items() if k.startswith("task"))


def test_a_resent_unit_resends_the_same_revision() -> None:
    pipe = InProcess(1, identities=REGISTRY)
    run(pipe)
    state = pipe.store[f"task:{sc.TASK}"]
    th = EvidenceThresholds.from_specs(pipe.engine.specs)
    again = dossiers.resend(state, th)
    newest = [r for r in pipe.evidence if r["task_id"] == sc.TASK][-1]
    assert again == newest
    # a partition entry that says its outputs were not sent names the task, and a new
    # owner re-sends exactly that record
    partition = next(p for p in range(pipe.partitions) if f"task:{sc.TASK}" in _keys_of(pipe, p))
    entry = pipe.store[PARTITION_KEY.format(partition)]
    entry["out"] = {"alerts": [], "items": [], "metrics": [], "evidence": [sc.TASK], "sent": False}
    pipe.stage2.forget({partition})
    out = pipe.stage2.process_unit(pipe.store, partition, [])
    assert out.replayed and out.evidence == [newest]


def _keys_of(pipe: InProcess, partition: int) -> set[str]:
    from pipeline.flow.messages import partition_for

    return {k for k in pipe.store if partition_for(k, pipe.partitions) == partition}


def test_the_state_is_forgotten_after_forget_at() -> None:
    pipe = InProcess(1, identities=REGISTRY)
    run(pipe)
    key = f"task:{sc.TASK}"
    assert dossiers.EV in pipe.store[key]
    eight_days = 8 * 24 * 60 * MINUTE
    pipe.read(0, [later(sc.COMPLETED + eight_days)])
    pipe.idle({0}, seconds=3600)
    # the dossier is forgotten; the finished task then expires whole (flow/expiry.py)
    assert dossiers.EV not in pipe.store.get(key, {})
    # a straggler afterwards starts an empty dossier that never emits (no completion)
    before = len(pipe.evidence)
    straggler = raw(sc.event("e-straggler", "action", sc.COMPLETED + 60 * S, identity_id=sc.B))
    pipe.read(0, [straggler])
    pipe.idle({0}, seconds=3600)
    assert len(pipe.evidence) == before
