"""Identity registry file: validation reports every bad entry with its index and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.enrichment.registry import (
    IdentityEntry,
    Problem,
    parse_registry,
    read_registry_file,
)
from pipeline.errors import ConfigError

GOOD = """
identities:
  - identity_id: agent-crm-01
    kind: ai_agent            # ai_agent | service_account | workload | human
    owner: alice@example.com
    team: sales-ops
    environment: prod
    risk_tier: high           # low | medium | high | critical
    allowed_scopes: [crm.read, crm.records.export]
    status: active            # active | disabled | offboarded
  - identity_id: bob@example.com
    kind: human
    owner: null
    team: sales-ops
    environment: prod
    risk_tier: low
    allowed_scopes: []
    status: active
"""

BAD = """
identities:
  - identity_id: ok-1
    kind: workload
  - identity_id: svc-2
    kind: robot
    risk_tier: extreme
  - identity_id: ok-1
    kind: workload
  - kind: human
    alowed_scopes: [x]
  - just a string
  - identity_id: svc-3
    kind: SERVICE_ACCOUNT
    status: OFFBOARDED
"""


def test_good_registry_parses_to_contract_hashes(tmp_path: Path) -> None:
    path = tmp_path / "identities.yaml"
    path.write_text(GOOD)
    entries, problems = parse_registry(read_registry_file(path))
    assert problems == []
    assert [e.identity_id for e in entries] == ["agent-crm-01", "bob@example.com"]
    assert entries[0].to_hash() == {
        "kind": "ai_agent",
        "owner": "alice@example.com",
        "team": "sales-ops",
        "environment": "prod",
        "risk_tier": "high",
        "allowed_scopes": '["crm.read","crm.records.export"]',
        "status": "active",
    }
    assert "owner" not in entries[1].to_hash()
    assert entries[1].to_hash()["allowed_scopes"] == "[]"


def test_mode_is_optional_validated_and_stored_only_when_given() -> None:
    entries, problems = parse_registry(
        {
            "identities": [
                {"identity_id": "a", "kind": "ai_agent", "mode": "Reporting"},
                {"identity_id": "b", "kind": "ai_agent"},
                {"identity_id": "c", "kind": "ai_agent", "mode": "semi"},
                {"identity_id": "d", "kind": "ai_agent", "mode": 3},
            ]
        }
    )
    assert [e.identity_id for e in entries] == ["a", "b"]
    assert entries[0].to_hash()["mode"] == "reporting"
    assert "mode" not in entries[1].to_hash()  # absent: read as autonomous
    assert [(p.entry_index, p.identity_id) for p in problems] == [(2, "c"), (3, "d")]
    assert str(problems[0]).startswith("identities[2] (c): mode: ")
    assert "'reporting', 'assistant' or 'autonomous'" in str(problems[0])


def test_registry_modes_match_the_contract_constants() -> None:
    from typing import get_args

    from pipeline.enrichment.keys import DEFAULT_MODE, IDENTITY_MODES
    from pipeline.enrichment.registry import IdentityMode

    assert get_args(IdentityMode) == IDENTITY_MODES and DEFAULT_MODE == IDENTITY_MODES[-1]


def test_every_bad_entry_is_reported_with_index_id_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "identities.yaml"
    path.write_text(BAD)
    entries, problems = parse_registry(read_registry_file(path))
    assert [e.identity_id for e in entries] == ["ok-1", "svc-3"]
    assert entries[1].kind == "service_account" and entries[1].status == "offboarded"
    assert [(p.entry_index, p.identity_id) for p in problems] == [
        (1, "svc-2"),
        (2, "ok-1"),
        (3, None),
        (4, None),
    ]
    assert "kind" in problems[0].reason and "risk_tier" in problems[0].reason
    assert "duplicate" in problems[1].reason and "identities[0]" in problems[1].reason
    assert "identity_id" in problems[2].reason and "alowed_scopes" in problems[2].reason
    assert str(problems[0]).startswith("identities[1] (svc-2): kind:")


def test_json_file_and_bare_list_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "identities.json"
    path.write_text('{"identities": [{"identity_id": "a", "kind": "workload"}]}')
    entries, problems = parse_registry(read_registry_file(path))
    assert problems == [] and entries[0].status == "active"
    assert parse_registry([{"identity_id": "b", "kind": "human"}])[0][0].identity_id == "b"


@pytest.mark.parametrize(
    "document", [None, "text", {"identities": "x"}, {"identities": [], "extra": 1}, 42]
)
def test_wrong_document_shapes_are_one_file_level_problem(document: object) -> None:
    entries, problems = parse_registry(document)
    assert entries == [] and len(problems) == 1 and problems[0].entry_index is None


def test_unreadable_files_raise_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        read_registry_file(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("identities: [\n  - {")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_registry_file(broken)
    broken_json = tmp_path / "broken.json"
    broken_json.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        read_registry_file(broken_json)


def test_field_limits() -> None:
    with pytest.raises(ValueError):
        IdentityEntry.model_validate({"identity_id": "", "kind": "human"})
    with pytest.raises(ValueError):
        IdentityEntry.model_validate({"identity_id": "a", "kind": "human", "owner": ""})
    assert str(Problem(None, None, "whole file")) == "whole file"


def test_cli_dry_run_reports_bad_entries_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "identities.yaml"
    path.write_text(BAD)
    assert main(["identities", "load", str(path), "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "identities[1] (svc-2): kind:" in err
    assert "4 bad entries" in err and "nothing written" in err
    path.write_text(GOOD)
    assert main(["identities", "load", str(path), "--dry-run"]) == 0
    assert "2 identities valid" in capsys.readouterr().out
