"""SP-06 activity by an offboarded or disabled identity."""

from __future__ import annotations

from pipeline.detectors.base import HOUR
from pipeline.detectors.sp06_inactive_identity_activity import DETECTOR

from .factory import T0, enriched, incidents, run


def test_offboarded_identity_action_fires() -> None:
    [f] = run(DETECTOR, [enriched("action", T0, identity={"status": "offboarded"})])
    assert f.subject == "agent-1" and f.facts["status"] == "offboarded"
    assert f.context["identity_id"] == "agent-1"


def test_disabled_identity_issuing_credentials_fires() -> None:
    assert (
        len(run(DETECTOR, [enriched("credential.issued", T0, identity={"status": "disabled"})]))
        == 1
    )


def test_active_or_unknown_identity_is_clean() -> None:
    assert run(DETECTOR, [enriched("action", T0)]) == []
    assert run(DETECTOR, [enriched("action", T0, identity={"known": False, "status": None})]) == []


def test_revoking_a_dead_identitys_credential_is_not_activity() -> None:
    assert (
        run(DETECTOR, [enriched("credential.revoked", T0, identity={"status": "offboarded"})]) == []
    )


def test_dedup_edge_one_hour() -> None:
    off = {"status": "offboarded"}
    within = [enriched("action", T0, identity=off), enriched("action", T0 + HOUR - 1, identity=off)]
    assert incidents(run(DETECTOR, within)) == [1, 2]
    across = [enriched("action", T0, identity=off), enriched("action", T0 + HOUR, identity=off)]
    assert incidents(run(DETECTOR, across)) == [1, 1]
    mixed = [enriched("action", T0, identity=off), enriched("delegation", T0 + 1, identity=off)]
    assert len(run(DETECTOR, mixed)) == 2
