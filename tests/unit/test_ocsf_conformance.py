"""Every detector's alert, Create and Update, is a valid OCSF Detection Finding.

Checked with an implementation that is not ours: ``py-ocsf-models`` (the OCSF
models SOC tooling uses to read findings; its ``DetectionFinding`` is OCSF's class
2004). A SOC whose reader rejects our alerts sees none of them (issue 16 item 9:
a string ``remediation`` made 0 of 90 alerts pass), so this test runs the real
``DetectionEngine.alerts`` path and not a hand-made record.

The model does not check everything OCSF's dictionary says (``class_uid`` is a
plain int there, ``type_uid`` is not tied to ``activity_id``), so the few rules
OCSF states in words are checked here too: ``type_uid = class_uid * 100 +
activity_id``, class 2004 in category 2 (Findings), the captions that go with the
ids.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from py_ocsf_models.events.findings.detection_finding import DetectionFinding
from py_ocsf_models.events.findings.severity_id import SeverityID
from pydantic import ValidationError

from pipeline.detectors.base import Detector, Finding
from pipeline.detectors.engine import DetectionEngine
from pipeline.detectors.registry import all_detectors

DETECTORS = all_detectors()
T0 = 1_790_000_000_000

#: A realistic subject per subject kind: (subject key, alert context).
CONTEXT: dict[str, dict[str, Any]] = {
    "identity": {"identity_id": "agent-7", "on_behalf_of": "alice", "platform": "crm-agents"},
    "credential": {
        "credential_id": "cred-42",
        "identity_id": "agent-7",
        "platform": "crm-agents",
        "environment": "prod",
    },
    "task": {"task_id": "task-9", "identity_id": "agent-7", "platform": "crm-agents"},
    "approval": {
        "approval_id": "appr-3",
        "approver": "bob",
        "identity_id": "agent-7",
        "task_id": "task-9",
    },
    "approver": {"approver": "bob", "platform": "crm-agents"},
    "requester": {"identity_id": "agent-7", "platform": "crm-agents"},
}
SUBJECT_FIELD = {
    "identity": "identity_id",
    "credential": "credential_id",
    "task": "task_id",
    "approval": "approval_id",
    "approver": "approver",
    "requester": "identity_id",
}


def finding_for(det: Detector) -> Finding:
    spec = det.spec
    context = dict(CONTEXT[spec.subject])
    windowed = spec.window_ms is not None
    start = T0 if windowed else None
    end = T0 + spec.window_ms if spec.window_ms is not None else None
    return Finding(
        detector=spec.id,
        subject=str(context[SUBJECT_FIELD[spec.subject]]),
        event_ids=["0190a1b2-0000-7000-8000-000000000001", "0190a1b2-0000-7000-8000-000000000002"],
        facts={"threshold": 10, "observed": 12.5, "ids": ["x", "y"], "reason": "example"},
        window_start=start,
        window_end=end,
        time=end if end is not None else T0,
        context=context,
    )


def create_and_update(det: Detector) -> tuple[dict[str, Any], dict[str, Any]]:
    """The engine's two alerts for one finding seen twice on one subject's state."""
    engine = DetectionEngine()
    state: dict[str, Any] = {}
    finding = finding_for(det)
    (create,) = engine.alerts(state, [finding], product_version="0.1.0")
    (update,) = engine.alerts(state, [finding], product_version="0.1.0")
    return create, update


def ocsf_problems(alert: dict[str, Any]) -> list[str]:
    """Why an OCSF reader would reject ``alert`` (empty when it is a valid finding)."""
    try:
        model = DetectionFinding.model_validate(alert)
    except ValidationError as exc:
        return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    problems = []
    if model.class_uid != 2004 or model.class_name != "Detection Finding":
        problems.append(f"class {model.class_uid}/{model.class_name} is not Detection Finding")
    if (model.category_uid, model.category_name) != (2, "Findings"):
        problems.append(f"category {model.category_uid}/{model.category_name} is not Findings")
    if int(model.type_uid) != model.class_uid * 100 + int(model.activity_id):
        problems.append(f"type_uid {int(model.type_uid)} != class_uid*100 + activity_id")
    if model.activity_name != model.activity_id.name:
        problems.append(f"activity_name {model.activity_name!r} for id {int(model.activity_id)}")
    if model.severity_id in (SeverityID.Unknown, SeverityID.Other):
        problems.append(f"severity_id {int(model.severity_id)} is not a normalised severity")
    if model.remediation is None or not model.remediation.desc:
        problems.append("remediation.desc missing")
    if model.finding_info.uid != alert.get("alert_id"):
        problems.append("finding_info.uid is not the alert id")
    if model.metadata.product.name != "govpipe" or not model.metadata.version.startswith("1."):
        problems.append("metadata.product/version")
    return problems


def test_every_detector_is_covered() -> None:
    assert len(DETECTORS) >= 22
    assert set(CONTEXT) >= {d.spec.subject for d in DETECTORS}


@pytest.mark.parametrize("det", DETECTORS, ids=lambda d: d.spec.id)
def test_create_and_update_are_ocsf_detection_findings(det: Detector) -> None:
    create, update = create_and_update(det)
    assert (create["activity_id"], update["activity_id"]) == (1, 2)
    assert create["alert_id"] == update["alert_id"]
    for alert in (create, update):
        assert ocsf_problems(alert) == [], (det.spec.id, alert["activity_name"])
    model = DetectionFinding.model_validate(update)
    assert int(model.type_uid) == 200402 and model.count == 2
    assert model.remediation is not None and model.remediation.desc == det.spec.remediation


def _sp01_create() -> dict[str, Any]:
    det = next(d for d in DETECTORS if d.spec.id == "SP-01")
    return create_and_update(det)[0]


@pytest.mark.parametrize(
    ("what", "change"),
    [
        ("string remediation (the issue-16 bug)", {"remediation": "Rotate the credential."}),
        ("remediation without desc", {"remediation": {"references": ["x"]}}),
        ("no finding_info.uid", {"finding_info": {"title": "t"}}),
        ("unknown activity", {"activity_id": 7}),
        ("type_uid of another class", {"type_uid": 300101}),
        ("type_uid not matching the activity", {"type_uid": 200402}),
        ("another class", {"class_uid": 2001}),
        ("severity as text only", {"severity_id": "high"}),
        ("no metadata.product", {"metadata": {"version": "1.1.0"}}),
        ("time as ISO text", {"time": "2026-09-21T10:00:00Z"}),
    ],
)
def test_the_check_rejects_a_deviation(what: str, change: dict[str, Any]) -> None:
    """The validation can fail: each deviation from OCSF is reported."""
    alert = copy.deepcopy(_sp01_create())
    assert ocsf_problems(alert) == []
    alert.update(change)
    assert ocsf_problems(alert), what
