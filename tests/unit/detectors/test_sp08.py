"""SP-08 orphaned identity."""

from __future__ import annotations

from pipeline.detectors.base import DAY
from pipeline.detectors.sp08_orphaned_identity import DETECTOR

from .factory import T0, enriched, incidents, run


def test_no_owner_fires() -> None:
    [f] = run(DETECTOR, [enriched("action", T0, identity={"owner": None, "owner_status": None})])
    assert f.facts["reason"] == "no_owner" and f.subject == "agent-1"


def test_offboarded_owner_fires() -> None:
    [f] = run(DETECTOR, [enriched("action", T0, identity={"owner_status": "offboarded"})])
    assert f.facts == {
        "reason": "owner_offboarded",
        "owner": "alice@example.com",
        "owner_status": "offboarded",
        "identity_kind": "ai_agent",
    }


def test_active_owner_and_humans_are_clean() -> None:
    assert run(DETECTOR, [enriched("action", T0)]) == []
    human = {"kind": "human", "owner": None}
    assert run(DETECTOR, [enriched("action", T0, identity=human)]) == []


def test_edge_owner_status_and_renotify() -> None:
    assert run(DETECTOR, [enriched("action", T0, identity={"owner_status": "active"})]) == []
    orphan = {"owner_status": "disabled"}
    day = T0 - T0 % DAY  # dedup periods are fixed days of event time (UTC)
    once = [
        enriched("action", day, identity=orphan),
        enriched("action", day + DAY - 1, identity=orphan),
    ]
    assert incidents(run(DETECTOR, once)) == [1, 2]
    twice = [enriched("action", T0, identity=orphan), enriched("action", T0 + DAY, identity=orphan)]
    assert incidents(run(DETECTOR, twice)) == [1, 1]
