"""Parsing registry hashes into enrichment views; garbage is absent, logged once, no values."""

from __future__ import annotations

import logging

import pytest

from pipeline.enrichment.keys import CREDENTIAL_FIELDS, IDENTITY_FIELDS, KeySpace
from pipeline.enrichment.views import (
    UNKNOWN_CREDENTIAL,
    UNKNOWN_IDENTITY,
    GarbageReport,
    credential_view,
    identity_view,
    parse_epoch_ms,
    parse_scope_list,
)


def identity_values(**fields: str) -> list[str | bool]:
    return [fields.get(f, False) for f in IDENTITY_FIELDS]


def credential_values(**fields: str) -> list[str | bool]:
    return [fields.get(f, False) for f in CREDENTIAL_FIELDS]


def test_identity_view_reads_every_contract_field() -> None:
    view = identity_view(
        "nhi:identity:a",
        identity_values(
            kind="ai_agent",
            owner="alice@example.com",
            team="sales-ops",
            environment="prod",
            risk_tier="high",
            allowed_scopes='["crm.read", "crm.records.export"]',
            status="active",
            mode="assistant",
        ),
        GarbageReport(),
    )
    assert view == {
        "known": True,
        "kind": "ai_agent",
        "owner": "alice@example.com",
        "team": "sales-ops",
        "environment": "prod",
        "risk_tier": "high",
        "allowed_scopes": ["crm.read", "crm.records.export"],
        "status": "active",
        "mode": "assistant",
        "owner_status": None,
    }


def test_identity_mode_absent_or_unreadable_is_the_strictest() -> None:
    report = GarbageReport()
    assert identity_view("k", identity_values(), report)["mode"] == "autonomous"
    assert identity_view("k", identity_values(mode=""), report)["mode"] == "autonomous"
    assert report.count == 0
    assert identity_view("k", identity_values(mode=" Reporting "), report)["mode"] == "reporting"
    assert identity_view("k", identity_values(mode="lazy"), report)["mode"] == "autonomous"
    assert report.count == 1  # reported, value not logged
    # a hash read by an older field list (7 values) is a hash without a mode
    assert identity_view("k", identity_values()[:7], report)["mode"] == "autonomous"
    assert UNKNOWN_IDENTITY["mode"] is None


def test_identity_view_owner_status_only_with_an_owner() -> None:
    report = GarbageReport()
    view = identity_view("k", identity_values(owner="bob"), report, "offboarded")
    assert view["owner"] == "bob" and view["owner_status"] == "offboarded"
    assert identity_view("k", identity_values(owner="bob"), report, False)["owner_status"] is None
    assert identity_view("k", identity_values(owner="bob"), report, "")["owner_status"] is None
    assert identity_view("k", identity_values(owner=""), report, "active")["owner_status"] is None


def test_identity_with_absent_and_empty_fields_is_known_with_nones() -> None:
    view = identity_view("k", identity_values(kind="workload", owner=""), GarbageReport())
    assert view["known"] is True
    assert view["owner"] is None and view["team"] is None
    assert view["allowed_scopes"] == []


def test_credential_view_times_and_lifetime() -> None:
    view = credential_view(
        "k",
        credential_values(
            identity_id="a",
            kind="jit_token",
            issued_via="jit",
            scopes='["x"]',
            issued_at="1700000000000",
            expires_at="1700003600000",
            rotated_at="",
            last_used_at="1700000001000",
        ),
        GarbageReport(),
    )
    assert view["issued_at"] == 1_700_000_000_000
    assert view["expires_at"] == 1_700_003_600_000
    assert view["rotated_at"] is None and view["revoked_at"] is None
    assert view["lifetime_ms"] == 3_600_000
    assert view["scopes"] == ["x"]
    assert view["task_id"] is None
    assert set(view) == {"known", *CREDENTIAL_FIELDS, "lifetime_ms"}


def test_credential_view_task_id() -> None:
    view = credential_view("k", credential_values(task_id="task-3"), GarbageReport())
    assert view["task_id"] == "task-3"
    assert credential_view("k", credential_values(task_id=""), GarbageReport())["task_id"] is None
    # values from a reader that predates the extension (nine contract fields)
    assert credential_view("k", credential_values()[:9], GarbageReport())["task_id"] is None


def test_no_expiry_means_no_lifetime() -> None:
    view = credential_view(
        "k", credential_values(issued_at="1700000000000", expires_at=""), GarbageReport()
    )
    assert view["expires_at"] is None and view["lifetime_ms"] is None


def test_unknown_views_have_every_field_none() -> None:
    assert UNKNOWN_IDENTITY["known"] is False
    assert all(UNKNOWN_IDENTITY[f] is None for f in (*IDENTITY_FIELDS, "owner_status"))
    assert UNKNOWN_CREDENTIAL["known"] is False
    assert all(UNKNOWN_CREDENTIAL[f] is None for f in (*CREDENTIAL_FIELDS, "lifetime_ms"))


@pytest.mark.parametrize(
    ("raw", "expected", "garbage"),
    [
        ('["a", "b"]', ["a", "b"], False),
        ("[]", [], False),
        ("", [], False),
        (False, [], False),
        ("[a, b", [], True),
        ('{"a": 1}', [], True),
        ('"crm.read"', [], True),
        ('["a", 3, null]', ["a"], True),
    ],
)
def test_scope_lists(raw: str | bool, expected: list[str], garbage: bool) -> None:
    report = GarbageReport()
    assert parse_scope_list(raw, "k", "scopes", report) == expected
    assert report.count == int(garbage)


@pytest.mark.parametrize(
    ("raw", "expected", "garbage"),
    [
        ("1700000000000", 1_700_000_000_000, False),
        (" 1700000000000 ", 1_700_000_000_000, False),
        ("", None, False),
        (False, None, False),
        (None, None, False),
        ("yesterday", None, True),
        ("1.7e12", None, True),
        ("-5", None, True),
        ("١٢٣", None, True),  # non-ASCII digits
    ],
)
def test_epoch_ms(raw: str | bool | None, expected: int | None, garbage: bool) -> None:
    report = GarbageReport()
    assert parse_epoch_ms(raw, "k", "issued_at", report) == expected
    assert report.count == int(garbage)


def test_garbage_is_logged_once_per_key_and_field_without_the_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    report = GarbageReport()
    secretish = "[sk_live_abcdef0123456789"
    keys = KeySpace()
    with caplog.at_level(logging.WARNING, logger="pipeline.enrichment.views"):
        for _ in range(3):
            identity_view(keys.identity("a"), identity_values(allowed_scopes=secretish), report)
        identity_view(keys.identity("b"), identity_values(allowed_scopes=secretish), report)
        report(keys.identity("c"), None, "a hash")
    assert report.count == 5
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert "nhi:identity:a" in messages[0] and "allowed_scopes" in messages[0]
    assert "nhi:identity:c is not a hash" in messages[2]
    assert all("sk_live" not in m for m in messages)


def test_report_memory_is_bounded() -> None:
    report = GarbageReport(max_remembered=2)
    for i in range(5):
        report(f"k{i}", "f", "x")
    assert report.count == 5
    assert len(report._seen) <= 2


def test_keyspace_refuses_glob_prefix() -> None:
    assert KeySpace("t:").credential("c") == "t:credential:c"
    with pytest.raises(ValueError):
        KeySpace("nhi*")
    with pytest.raises(ValueError):
        KeySpace("")
