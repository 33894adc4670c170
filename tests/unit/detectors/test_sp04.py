"""SP-04 out-of-scope use."""

from __future__ import annotations

from pipeline.detectors.base import HOUR
from pipeline.detectors.sp04_out_of_scope_use import DETECTOR

from .factory import T0, enriched, incidents, run


def test_scope_outside_credential_and_identity_fires() -> None:
    [f] = run(DETECTOR, [enriched("action", T0, scope="crm.delete")])
    assert f.facts["reasons"] == ["outside_credential_scopes", "outside_identity_allowed_scopes"]
    assert f.facts["scope"] == "crm.delete" and f.context["credential_id"] == "cred-1"


def test_scope_outside_identity_allowed_only() -> None:
    event = enriched("action", T0, scope="billing.read", credential={"scopes": ["billing.read"]})
    [f] = run(DETECTOR, [event])
    assert f.facts["reasons"] == ["outside_identity_allowed_scopes"]


def test_in_scope_is_clean() -> None:
    assert run(DETECTOR, [enriched("action", T0, scope="crm.read")]) == []


def test_glob_grant_edge() -> None:
    cred = {"scopes": ["crm.*"]}
    ident = {"allowed_scopes": ["crm.*"]}
    assert (
        run(
            DETECTOR,
            [enriched("action", T0, scope="crm.records.read", credential=cred, identity=ident)],
        )
        == []
    )
    assert (
        len(
            run(
                DETECTOR,
                [enriched("action", T0, scope="crmx.read", credential=cred, identity=ident)],
            )
        )
        == 1
    )


def test_unconfigured_allowed_scopes_and_unknown_credential_are_not_checked() -> None:
    event = enriched(
        "action", T0, scope="x.y", identity={"allowed_scopes": []}, credential={"known": False}
    )
    assert run(DETECTOR, [event]) == []


def test_credential_whose_issuance_is_not_known_yet_is_not_scope_checked() -> None:
    """A revocation applied before the issuance leaves a hash without scopes."""
    lifecycle_only = {
        "issued_at": None,
        "kind": None,
        "issued_via": None,
        "scopes": [],
        "expires_at": None,
        "revoked_at": T0,
    }
    event = enriched(
        "action",
        T0,
        scope="crm.read",
        identity={"allowed_scopes": ["crm.*"]},
        credential=lifecycle_only,
    )
    event["credential"]["kind"] = None  # type: ignore[index]
    assert run(DETECTOR, [event]) == []


def mid_task(rotated_at: int) -> list[dict[str, object]]:
    return [
        enriched("credential.issued", T0, scopes=["crm.read"]),
        enriched("credential.rotated", rotated_at, scopes=["crm.read", "crm.write"]),
        enriched("action", rotated_at + HOUR, scope="crm.write"),
    ]


def test_scope_added_mid_task_fires_edge_at_task_start_is_clean() -> None:
    [f] = run(DETECTOR, mid_task(T0 + 1))
    assert f.facts["reasons"] == ["scope_added_mid_task"]
    assert f.facts["scope_granted_at"] == T0 + 1 and f.facts["task_first_use_at"] == T0
    assert run(DETECTOR, mid_task(T0)) == []


def test_event_scopes_beat_registry_scopes_once_issuance_seen() -> None:
    events = [
        enriched("credential.issued", T0, scopes=["crm.read"]),
        enriched(
            "action", T0 + 1, scope="crm.write", credential={"scopes": ["crm.read", "crm.write"]}
        ),
    ]
    [f] = run(DETECTOR, events)
    assert f.facts["reasons"] == ["outside_credential_scopes"]


def test_every_out_of_scope_use_is_reported_one_incident_per_hour() -> None:
    events = [enriched("action", T0 + i, scope="crm.delete") for i in range(3)]
    events.append(enriched("action", T0 + 5, scope="crm.purge"))
    events.append(enriched("action", T0 + HOUR, scope="crm.delete"))
    found = run(DETECTOR, events)
    assert [f.facts["scope"] for f in found] == ["crm.delete"] * 3 + ["crm.purge", "crm.delete"]
    assert incidents(found) == [1, 2, 2, 2, 1]
