"""SL-01 secret in telemetry: where and what kind, never the value."""

from __future__ import annotations

from typing import Any

from pipeline.detectors.base import HOUR, Context, Finding
from pipeline.detectors.sl01_secret_in_telemetry import DETECTOR, SPEC, UNATTRIBUTED
from tests.unit.detectors.factory import T0, enriched

LEAK = [{"path": "attributes.api_key", "kind": "github_token"}]


def feed(events: list[Any], subject: str = "agent-1", state: Any = None) -> list[Finding]:
    ctx = Context(SPEC, dict(SPEC.thresholds), subject, T0)
    return DETECTOR.on_events(ctx, {} if state is None else state, events)


def leaky(t: int = T0, secrets: list[dict[str, str]] = LEAK, **fields: Any) -> dict[str, Any]:
    event = enriched("action", t, attributes={"api_key": "[REDACTED:github_token]"}, **fields)
    event["_secrets"] = secrets
    return event


def test_fires_with_paths_and_kinds_only() -> None:
    event = leaky()
    [finding] = feed([event])
    assert finding.subject == "agent-1"
    assert finding.facts["secret_paths"] == ["attributes.api_key"]
    assert finding.facts["secret_kinds"] == ["github_token"]
    assert finding.facts["secrets_found"] == 1
    assert "REDACTED" not in str(finding.facts)
    assert finding.event_ids == [event["event_id"]]


def test_any_event_type_and_no_identity() -> None:
    event = enriched("credential.issued", T0, identity_id=None)
    event["_secrets"] = [{"path": "justification", "kind": "aws_access_key"}]
    [finding] = feed([event], subject="")
    assert finding.subject == UNATTRIBUTED
    assert "credential.issued" in SPEC.event_types


def test_negative_clean_events() -> None:
    assert feed([enriched("action", T0), {**enriched("action", T0), "_secrets": []}]) == []


def test_edge_once_per_leak_site_per_hour() -> None:
    state: dict[str, Any] = {}
    assert len(feed([leaky()], state=state)) == 1
    assert len(feed([leaky(T0 + HOUR - 1)], state=state)) == 1
    other = [{"path": "resource", "kind": "jwt"}]
    assert len(feed([leaky(T0 + HOUR - 1, secrets=other)], state=state)) == 1
    assert len(feed([leaky(T0 + HOUR)], state=state)) == 1
