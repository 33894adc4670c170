"""Alert shape (OCSF 1.1 Detection Finding + docs/contracts/alerts.md govpipe fields) and dedup."""

from __future__ import annotations

import json
import uuid

from pipeline.detectors import alerts
from pipeline.detectors.base import Finding
from pipeline.detectors.sp02_not_revoked_on_completion import SPEC as SP02
from pipeline.detectors.sp07_credential_reuse import SPEC as SP07

GOVPIPE_FIELDS = {
    "alert_id",
    "detector",
    "severity",
    "identity_id",
    "on_behalf_of",
    "credential_id",
    "approval_id",
    "approver",
    "task_id",
    "platform",
    "environment",
    "window_start",
    "window_end",
    "evidence",
    "frameworks",
    "remediation",
}
OCSF_FIELDS = {
    "class_uid",
    "category_uid",
    "activity_id",
    "type_uid",
    "severity_id",
    "time",
    "finding_info",
    "metadata",
    "status",
}


def finding(**over: object) -> Finding:
    base: dict[str, object] = {
        "detector": "SP-02",
        "subject": "task-1",
        "event_ids": ["ev-1", "ev-2"],
        "facts": {"grace_s": 300, "unrevoked_credential_ids": ["cred-1"]},
        "window_start": 1000,
        "window_end": 301_000,
        "time": 301_000,
        "context": {"task_id": "task-1", "credential_id": "cred-1", "platform": "crm-agents"},
    }
    base.update(over)
    return Finding(**base)  # type: ignore[arg-type]


def test_alert_id_is_uuid5_of_detector_subject_window() -> None:
    ns = alerts.ALERT_NAMESPACE
    assert alerts.alert_id(finding()) == str(uuid.uuid5(ns, "SP-02|task-1|1000"))
    assert alerts.alert_id(finding(window_start=2000)) != alerts.alert_id(finding())


def test_single_event_alert_id_is_per_fixed_dedup_period_of_event_time() -> None:
    ns = alerts.ALERT_NAMESPACE
    hour = 3_600_000
    at = 5 * hour + 1
    single = finding(window_start=None, window_end=None, time=at)
    assert alerts.alert_id(single) == str(uuid.uuid5(ns, f"SP-02|task-1|p{5 * hour}"))
    same_period = finding(window_start=None, window_end=None, time=6 * hour - 1)
    next_period = finding(window_start=None, window_end=None, time=6 * hour)
    assert alerts.alert_id(same_period) == alerts.alert_id(single)
    assert alerts.alert_id(next_period) != alerts.alert_id(single)
    # a shorter period per detector (policy dedup_s) splits them
    assert alerts.alert_id(same_period, 60_000) != alerts.alert_id(single, 60_000)


def test_occurrences_in_one_period_are_one_create_then_updates_with_every_event() -> None:
    from pipeline.detectors.engine import DetectionEngine

    engine = DetectionEngine()
    state: dict = {}
    hour = 3_600_000
    occ = [
        finding(window_start=None, window_end=None, time=hour + i, event_ids=[f"e{i}"])
        for i in range(3)
    ]
    for f in occ:
        f.detector = "SP-01"
    first = engine.alerts(state, occ[:2], product_version="t")
    later = engine.alerts(state, occ[2:], product_version="t")
    assert [a["activity_id"] for a in first + later] == [1, 2]
    assert first[0]["evidence"]["event_ids"] == ["e0", "e1"] and first[0]["count"] == 2
    assert later[0]["evidence"]["event_ids"] == ["e2"] and later[0]["count"] == 3
    assert later[0]["alert_id"] == first[0]["alert_id"]
    assert later[0]["finding_info"]["last_seen_time"] == hour + 2


def test_alert_shape() -> None:
    alert = alerts.to_alert(finding(), SP02, activity="create", count=1, product_version="0.1.0")
    assert GOVPIPE_FIELDS | OCSF_FIELDS <= set(alert)
    assert (alert["class_uid"], alert["category_uid"]) == (2004, 2)
    assert (alert["activity_id"], alert["type_uid"]) == (1, 200401)
    assert alert["severity"] == "medium" and alert["severity_id"] == 3
    info = alert["finding_info"]
    assert info["uid"] == alert["alert_id"] and info["types"] == ["SP-02"]
    assert info["title"] == SP02.title and info["desc"] == SP02.description
    assert (info["first_seen_time"], info["last_seen_time"]) == (1000, 301_000)
    assert alert["metadata"]["version"] == "1.1.0"
    assert alert["metadata"]["product"]["name"] == "govpipe"
    assert alert["metadata"]["product"]["vendor_name"] == "govpipe"
    assert alert["identity_id"] is None and alert["approver"] is None  # n/a -> null
    assert alert["task_id"] == "task-1" and alert["credential_id"] == "cred-1"
    assert alert["evidence"] == {
        "event_ids": ["ev-1", "ev-2"],
        "event_ids_omitted": 0,
        "facts": finding().facts,
    }
    assert {"framework": "OWASP-NHI", "control": "NHI-07"} in alert["frameworks"]
    assert alert["remediation"] == {"desc": SP02.remediation}
    json.dumps(alert)


def test_update_and_severity_ids() -> None:
    f = finding(severity="critical")
    alert = alerts.to_alert(f, SP07, activity="update", count=3, product_version="x")
    assert (alert["activity_id"], alert["type_uid"], alert["count"]) == (2, 200402, 3)
    assert (alert["severity"], alert["severity_id"]) == ("critical", 5)
    assert alerts.SEVERITY_ID == {"low": 2, "medium": 3, "high": 4, "critical": 5}


def test_facts_hold_scalars_and_bounded_strings_only() -> None:
    f = finding(facts={"n": 1, "blob": {"secret": "x"}, "long": "a" * 1000, "ids": ["a", {"b": 1}]})
    facts = alerts.to_alert(f, SP02, activity="create", count=1, product_version="x")["evidence"][
        "facts"
    ]
    assert facts["n"] == 1 and facts["ids"] == ["a"]
    assert len(facts["long"]) == alerts.MAX_FACT_TEXT
    assert isinstance(facts["blob"], str)


def test_record_alert_create_then_update_bounded() -> None:
    state: dict[str, object] = {}
    assert alerts.record_alert(state, "a", 5) == ("create", 1)
    assert alerts.record_alert(state, "a", 3) == ("update", 2)
    assert alerts.first_seen(state, "a") == 3
    for i in range(alerts.MAX_ALERTS_PER_SUBJECT):
        alerts.record_alert(state, f"x{i}", i)
    assert alerts.record_alert(state, "a", 9) == ("create", 1)  # forgotten: oldest evicted
    assert len(state["_alerts"]) == alerts.MAX_ALERTS_PER_SUBJECT  # type: ignore[arg-type]
