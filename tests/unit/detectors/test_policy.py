"""The policy file: defaults, the example, and errors that name the line."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.commands import policy as policy_command
from pipeline.detectors.policy import (
    DEFAULT_POLICY,
    PolicyError,
    load_policy,
    parse_policy,
)
from pipeline.detectors.registry import all_detectors
from pipeline.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "deploy" / "policy.example.yaml"


def errors(text: str) -> list[str]:
    with pytest.raises(PolicyError) as info:
        parse_policy(text)
    return info.value.errors


def test_defaults_without_a_file() -> None:
    policy = load_policy(None)
    assert policy is DEFAULT_POLICY and policy.allowed_lateness_ms == 300_000
    assert policy.is_privileged("IAM.roles.write") and policy.is_privileged("crm.admin")
    assert policy.is_privileged("repo:write-all") and not policy.is_privileged("crm.read")
    assert policy.is_sensitive_action("crm.records.export")
    assert not policy.is_sensitive_action("crm.records.read")


def test_minimal_file() -> None:
    assert parse_policy("version: 1\n") == DEFAULT_POLICY


def test_example_documents_every_knob_at_its_default() -> None:
    specs = [d.spec for d in all_detectors()]
    assert EXAMPLE.read_text() == policy_command.render_example(specs), (
        "regenerate: govpipe policy example > deploy/policy.example.yaml"
    )
    example = load_policy(EXAMPLE)
    assert example.privileged_scopes == DEFAULT_POLICY.privileged_scopes
    for spec in specs:
        assert example.thresholds(spec) == dict(spec.thresholds)
        assert example.severity(spec) == spec.severity and example.enabled(spec)


def test_overrides_parse() -> None:
    policy = parse_policy(
        "version: 1\n"
        "detectors:\n"
        "  SP-01:\n"
        "    enabled: false\n"
        "    severity: high\n"
        "    thresholds: {max_lifetime_ai_agent_s: 7200}\n"
        "exceptions:\n"
        "  identities: {SP-01: [agent-x], '*': [agent-test]}\n"
        "privileged_scopes: ['db.*']\n"
    )
    spec = next(d.spec for d in all_detectors() if d.spec.id == "SP-01")
    assert not policy.enabled(spec) and policy.severity(spec) == "high"
    assert policy.thresholds(spec)["max_lifetime_ai_agent_s"] == 7200
    assert policy.excepted("SP-01", {"identity_id": "agent-x"})
    assert policy.excepted("RS-03", {"identity_id": "agent-test"})
    assert not policy.excepted("RS-03", {"identity_id": "agent-x"})
    assert policy.is_privileged("db.drop") and not policy.is_privileged("iam.x")


def test_unknown_threshold_names_its_line() -> None:
    text = "version: 1\ndetectors:\n  SP-01:\n    thresholds:\n      max_lifetime_s: 10\n"
    assert errors(text) == [
        "policy.yaml:5: detectors.SP-01.thresholds.max_lifetime_s: unknown threshold"
    ]


def test_every_kind_of_mistake_is_reported_with_its_line() -> None:
    text = (
        "version: 1\n"  # 1
        "detectors:\n"  # 2
        "  SP-99: {}\n"  # 3
        "  SP-02:\n"  # 4
        "    thresholds: {grace_s: -1}\n"  # 5
        "  SP-07:\n"  # 6
        "    thresholds:\n"  # 7
        "      min_identities: 2.5\n"  # 8
        "      window_s: soon\n"  # 9
        "exceptions:\n"  # 10
        "  approvers: {XX-01: [bob]}\n"  # 11
    )
    assert errors(text) == [
        "policy.yaml:3: detectors.SP-99: unknown detector",
        "policy.yaml:5: detectors.SP-02.thresholds.grace_s: must not be negative",
        "policy.yaml:8: detectors.SP-07.thresholds.min_identities: expected a whole number",
        "policy.yaml:9: detectors.SP-07.thresholds.window_s: expected a number",
        "policy.yaml:11: exceptions.approvers.XX-01: unknown detector",
    ]


def test_schema_errors_name_their_line() -> None:
    text = (
        "version: 1\n"
        "allowed_lateness_ms: lots\n"
        "detectors:\n"
        "  SP-01:\n"
        "    severity: urgent\n"
        "    enable: true\n"
        "privileged_scopes: [1]\n"
    )
    found = errors(text)
    assert found[0].startswith("policy.yaml:2: allowed_lateness_ms: ")
    assert found[1].startswith("policy.yaml:5: detectors.SP-01.severity: ")
    assert found[2] == "policy.yaml:6: detectors.SP-01.enable: unknown key"
    assert found[3].startswith("policy.yaml:7: privileged_scopes[0]: ")
    assert len(found) == 4


def test_version_yaml_and_shape_errors() -> None:
    assert errors("detectors: {}\n") == ["policy.yaml:1: version: required"]
    assert errors("version: 2\n")[0].startswith("policy.yaml:1: version: ")
    assert errors("- a\n") == ["policy.yaml:1: the policy must be a mapping with 'version: 1'"]
    assert errors("")[0].endswith("the policy must be a mapping with 'version: 1'")
    assert errors("version: 1\ndetectors: [\n")[0].startswith("policy.yaml:3: invalid YAML")
    assert errors("version: 1\nversion: 1\n") == ["policy.yaml:2: version: duplicate key"]


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read policy file"):
        load_policy(tmp_path / "nope.yaml")


def test_policy_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    policy_command.register(parser.add_subparsers())
    good = tmp_path / "good.yaml"
    good.write_text("version: 1\ndetectors:\n  SP-03: {enabled: false}\n")
    args = parser.parse_args(["policy", "check", str(good)])
    assert args.handler(args) == 0
    assert capsys.readouterr().out == f"ok: {len(all_detectors()) - 1} detectors enabled\n"
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ndetectors:\n  SP-01:\n    thresholds: {nope: 1}\n")
    args = parser.parse_args(["policy", "check", str(bad)])
    assert args.handler(args) == 1
    assert (
        capsys.readouterr().err == f"{bad}:4: detectors.SP-01.thresholds.nope: unknown threshold\n"
    )


def test_deploy_policy_is_valid() -> None:
    load_policy(ROOT / "deploy" / "policy.yaml")


ONE_OF_EACH = (
    "version: 1\n"  # 1
    "allowed_lateness_ms: lots\n"  # 2
    "detectors:\n"  # 3
    "  SP-99: {enabled: true}\n"  # 4
    "  SP-01:\n"  # 5
    "    severity: urgent\n"  # 6
    "    enable: true\n"  # 7
    "    thresholds: {max_lifetime_s: 10, dedup_s: -5}\n"  # 8
    "  SP-07:\n"  # 9
    "    enabled: 'no'\n"  # 10
    "    thresholds:\n"  # 11
    "      min_identities: 2.5\n"  # 12
    "  RS-03: []\n"  # 13
    "exceptions:\n"  # 14
    "  identities: {SP-01: agent-x, XX-01: [a]}\n"  # 15
    "  approvers: {RS-03: [1, bob]}\n"  # 16
    "privileged_scopes: ['', 3]\n"  # 17
)


def test_schema_and_name_errors_are_reported_together_in_file_order() -> None:
    """One pass: a wrong type no longer hides an unknown detector or threshold."""
    assert errors(ONE_OF_EACH) == [
        "policy.yaml:2: allowed_lateness_ms: expected a whole number",
        "policy.yaml:4: detectors.SP-99: unknown detector",
        "policy.yaml:6: detectors.SP-01.severity: expected 'low', 'medium', 'high' or 'critical'",
        "policy.yaml:7: detectors.SP-01.enable: unknown key",
        "policy.yaml:8: detectors.SP-01.thresholds.max_lifetime_s: unknown threshold",
        "policy.yaml:8: detectors.SP-01.thresholds.dedup_s: must not be negative",
        "policy.yaml:10: detectors.SP-07.enabled: expected true or false",
        "policy.yaml:12: detectors.SP-07.thresholds.min_identities: expected a whole number",
        "policy.yaml:13: detectors.RS-03: expected a mapping",
        "policy.yaml:15: exceptions.identities.SP-01: expected a list",
        "policy.yaml:15: exceptions.identities.XX-01: unknown detector",
        "policy.yaml:16: exceptions.approvers.RS-03[0]: expected a string",
        "policy.yaml:17: privileged_scopes[0]: empty pattern",
        "policy.yaml:17: privileged_scopes[1]: expected a string",
    ]


def test_policy_check_prints_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    policy_command.register(parser.add_subparsers())
    bad = tmp_path / "bad.yaml"
    bad.write_text(ONE_OF_EACH)
    args = parser.parse_args(["policy", "check", str(bad)])
    assert args.handler(args) == 1
    printed = capsys.readouterr().err.splitlines()
    assert printed == [e.replace("policy.yaml", str(bad), 1) for e in errors(ONE_OF_EACH)]


def test_worker_stops_at_start_with_the_same_full_list(tmp_path: Path) -> None:
    """The worker loads the policy before it touches the broker or Redis."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(ONE_OF_EACH)
    env = {
        **os.environ,
        "GOVPIPE_POLICY": str(bad),
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "FAUST_DATADIR": str(tmp_path / "data"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    expected = [e.replace("policy.yaml", str(bad), 1) for e in errors(ONE_OF_EACH)]
    assert done.stderr.splitlines() == [
        f"govpipe: invalid policy ({len(expected)} problems):",
        *(f"  {e}" for e in expected),
    ]
