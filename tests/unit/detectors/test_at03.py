"""AT-03 delegation escalation: a delegate receives scopes the delegator does not hold."""

from __future__ import annotations

from typing import Any

from pipeline.detectors.at03_delegation_escalation import DETECTOR, SPEC
from pipeline.detectors.base import Context, Finding
from tests.unit.detectors.factory import T0, enriched


def feed(events: list[Any]) -> list[Finding]:
    ctx = Context(SPEC, dict(SPEC.thresholds), "agent-1", T0)
    return DETECTOR.on_events(ctx, {}, events)


def delegate(scopes: list[str], **fields: Any) -> dict[str, Any]:
    """agent-1 (allowed crm.read, crm.write) delegates to agent-2 under its credential."""
    fields.setdefault("credential_id", "cred-1")
    fields.setdefault("credential", {"scopes": ["crm.read"]})
    return enriched("delegation", T0, scopes=scopes, **fields)


def test_fires_when_the_delegate_gets_more_than_the_delegator_holds() -> None:
    event = delegate(["crm.read", "iam.admin", "billing.read"])
    [finding] = feed([event])
    assert finding.subject == "agent-1"
    assert finding.facts["excess_scopes"] == ["billing.read", "iam.admin"]
    assert finding.facts["delegate_identity_id"] == "agent-2"
    assert finding.facts["held_from"] == ["identity.allowed_scopes", "credential.scopes"]
    assert finding.event_ids == [event["event_id"]]


def test_negative_a_subset_of_identity_and_credential_scopes() -> None:
    assert feed([delegate(["crm.read", "crm.write"])]) == []
    only_cred = delegate(["files.read"], credential={"scopes": ["files.read"]})
    assert feed([only_cred]) == []


def test_edge_a_glob_grant_covers_its_children_only() -> None:
    globbed = {"allowed_scopes": ["crm.*"]}
    assert feed([delegate(["crm.export"], identity=globbed)]) == []
    [finding] = feed([delegate(["crmx.export"], identity=globbed)])
    assert finding.facts["excess_scopes"] == ["crmx.export"]


def test_unconfigured_holdings_are_not_judged() -> None:
    unknown = delegate(
        ["iam.admin"], identity={"known": False, "allowed_scopes": []}, credential_id=None
    )
    assert feed([unknown]) == []
    no_scopes = delegate(["iam.admin"], identity={"allowed_scopes": []}, credential_id=None)
    assert feed([no_scopes]) == []
