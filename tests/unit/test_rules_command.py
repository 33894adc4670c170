"""`govpipe rules new` and `govpipe rules test`, and the harness behind them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline import ruletest
from pipeline.cli import main
from pipeline.detectors.base import MINUTE
from tests.support.user_rule import RULE, RULE_FILE

T0 = 1_767_603_600_000  # 2026-01-05T09:00:00Z


def export(event_id: str, rows: int, **more: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_type": "action",
        "event_time": T0,
        "platform": "crm",
        "identity_id": "agent-7",
        "action": "crm.accounts.export",
        "attributes": {"rows": str(rows)},
        **more,
    }


@pytest.fixture
def rule(tmp_path: Path) -> Path:
    path = tmp_path / RULE_FILE
    path.write_text(RULE)
    return path


def jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


# -- rules new --------------------------------------------------------------------------


def test_scaffold_passes_its_own_tests_and_lint(tmp_path: Path) -> None:
    assert main(["rules", "new", "ACME-07", "--dir", str(tmp_path / "rules")]) == 0
    rules = tmp_path / "rules"
    assert sorted(p.name for p in rules.iterdir()) == ["acme_07.py", "test_acme_07.py"]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(rules)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert run.returncode == 0 and "2 passed" in run.stdout, run.stdout + run.stderr
    ruff = Path(sys.executable).with_name("ruff")
    lint = subprocess.run([ruff, "check", "--line-length", "100", str(rules)], capture_output=True)
    assert lint.returncode == 0, lint.stdout


def test_scaffold_refuses_bad_taken_or_existing(tmp_path: Path, capsys: Any) -> None:
    assert main(["rules", "new", "acme 1", "--dir", str(tmp_path)]) == 2
    assert "bad id 'acme 1'" in capsys.readouterr().err
    assert main(["rules", "new", "SP-01", "--dir", str(tmp_path)]) == 2
    assert "SP-01 is taken by pipeline/detectors/sp01_long_lived_credential.py:" in (
        capsys.readouterr().err
    )
    (tmp_path / "acme_02.py").write_text("# mine\n")
    assert main(["rules", "new", "ACME-02", "--dir", str(tmp_path)]) == 2
    assert "acme_02.py exists; not overwritten" in capsys.readouterr().err
    assert (tmp_path / "acme_02.py").read_text() == "# mine\n"


# -- rules test -------------------------------------------------------------------------


def test_prints_findings_and_passes_an_expectation(rule: Path, tmp_path: Path, capsys: Any) -> None:
    events = jsonl(tmp_path / "e.jsonl", [export("e1", 5000), export("e2", 10)])
    expect = jsonl(tmp_path / "x.jsonl", [{"event_ids": ["e1"], "time": "2026-01-05T09:00:00Z"}])
    assert main(["rules", "test", str(rule), "--events", str(events), "--expect", str(expect)]) == 0
    out = capsys.readouterr()
    assert out.out == (
        "ACME-01  medium  agent-7  2026-01-05T09:00:00.000Z  events=e1  "
        'facts={"action":"crm.accounts.export","rows":5000}\n'
    )
    assert out.err == "ok: 1 finding(s) of ACME-01 over 2 event(s), as expected\n"


def test_json_output_is_an_expectation_file(rule: Path, tmp_path: Path, capsys: Any) -> None:
    events = jsonl(tmp_path / "e.jsonl", [export("e1", 5000)])
    assert main(["rules", "test", str(rule), "--events", str(events), "--json"]) == 0
    expect = tmp_path / "x.jsonl"
    expect.write_text(capsys.readouterr().out)
    assert orjson.loads(expect.read_text()) == {
        "detector": "ACME-01",
        "severity": "medium",
        "subject": "agent-7",
        "time": "2026-01-05T09:00:00.000Z",
        "event_ids": ["e1"],
        "facts": {"action": "crm.accounts.export", "rows": 5000},
    }
    assert main(["rules", "test", str(rule), "--events", str(events), "--expect", str(expect)]) == 0


def test_mismatch_prints_a_diff_and_exits_1(rule: Path, tmp_path: Path, capsys: Any) -> None:
    events = jsonl(tmp_path / "e.jsonl", [export("e1", 5000)])
    expect = jsonl(tmp_path / "x.jsonl", [{"facts": {"rows": 4000}}])
    assert main(["rules", "test", str(rule), "--events", str(events), "--expect", str(expect)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("ACME-01  medium  agent-7")  # the findings, then the diff
    assert "1 expected finding(s) missing (-), 1 unexpected (+)" in lines[1]
    assert lines[2] == f'- {expect}:1: {{"facts":{{"rows":4000}}}}'
    assert lines[3].startswith("+ ACME-01  medium  agent-7")


def test_empty_expectation_means_no_finding(rule: Path, tmp_path: Path) -> None:
    events = jsonl(tmp_path / "e.jsonl", [export("e1", 10)])
    expect = tmp_path / "x.jsonl"
    expect.write_text("")
    assert main(["rules", "test", str(rule), "--events", str(events), "--expect", str(expect)]) == 0
    jsonl(events, [export("e1", 5000)])
    assert main(["rules", "test", str(rule), "--events", str(events), "--expect", str(expect)]) == 1


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([b'{"event_id": "e1"', b""], ":1: truncated JSON"),
        ([orjson.dumps(export("e1", 5)), b"", b"[1]"], ":3: expected a JSON object, got list"),
        ([orjson.dumps({**export("e1", 5), "event_type": "act"})], ":1: unknown_event_type"),
        ([orjson.dumps(export("e1", 5, identity={"knd": "x"}))], ":1: identity.knd: unknown field"),
        ([orjson.dumps(export("e1", 5, credential={"kind": "x"}))], "no credential_id"),
    ],
)
def test_bad_event_files_name_the_line(
    rule: Path, tmp_path: Path, capsys: Any, lines: list[bytes], message: str
) -> None:
    events = tmp_path / "e.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    assert main(["rules", "test", str(rule), "--events", str(events)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"govpipe: {events}") and message in err and err.count("\n") == 1


def test_bad_expectation_names_the_line(rule: Path, tmp_path: Path, capsys: Any) -> None:
    events = jsonl(tmp_path / "e.jsonl", [export("e1", 5000)])
    expect = jsonl(tmp_path / "x.jsonl", [{"subject": "agent-7"}, {"subjet": "x"}])
    assert main(["rules", "test", str(rule), "--events", str(events), "--expect", str(expect)]) == 2
    assert f"{expect}:2: subjet: unknown field" in capsys.readouterr().err


def test_unknown_rule(tmp_path: Path, capsys: Any) -> None:
    events = jsonl(tmp_path / "e.jsonl", [])
    assert main(["rules", "test", "ACME-99", "--events", str(events)]) == 2
    assert "ACME-99: no such detector" in capsys.readouterr().err
    assert main(["rules", "test", str(tmp_path / "nope.py"), "--events", str(events)]) == 2
    assert "nope.py: no such rule file" in capsys.readouterr().err


def test_policy_tunes_and_switches_off(rule: Path, tmp_path: Path, capsys: Any) -> None:
    events = jsonl(tmp_path / "e.jsonl", [export("e1", 800)])
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "version: 1\ndetectors:\n  ACME-01: {severity: low, thresholds: {max_rows: 500}}\n"
    )
    args = ["rules", "test", str(rule), "--events", str(events), "--policy", str(policy)]
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("ACME-01  low  agent-7")
    policy.write_text("version: 1\ndetectors:\n  ACME-01: {enabled: false}\n")
    assert main(args) == 0
    out = capsys.readouterr()
    assert out.out == "" and "the policy switches ACME-01 off" in out.err
    policy.write_text("version: 1\ndetectors:\n  ACME-01: {thresholds: {max_row: 5}}\n")
    assert main(args) == 2
    assert "detectors.ACME-01.thresholds.max_row: unknown threshold" in capsys.readouterr().err


# -- the harness -------------------------------------------------------------------------


def test_builtin_by_id_with_inline_enrichment() -> None:
    """SP-06 reads the registry's status: given inline, it fires; left out, the
    identity is unknown to the registry (as in the worker) and SP-06 stays quiet."""
    event = export("e1", 1, identity={"kind": "ai_agent", "status": "offboarded"})
    [finding] = ruletest.run_rule("SP-06", [event])
    assert finding.detector == "SP-06" and finding.event_ids == ["e1"]
    assert ruletest.run_rule("SP-06", [export("e1", 1)]) == []
    assert ruletest.prepare_event(export("e1", 1))["identity"]["known"] is False


def test_credential_view_times_and_lifetime() -> None:
    event = ruletest.prepare_event(
        export(
            "e1",
            1,
            credential_id="c1",
            credential={"issued_at": T0, "expires_at": "2026-01-05T10:00:00Z"},
        )
    )
    assert event["credential"]["known"] is True
    assert event["credential"]["lifetime_ms"] == 60 * MINUTE
    assert event["credential"]["scopes"] == []


def test_absence_fires_when_the_watermark_reaches_the_end() -> None:
    """SP-02 waits for a revocation that never comes: the end of input moves the
    watermark on; ``until`` short of the grace keeps it quiet; a repeat counts once."""
    base = {"platform": "p", "identity_id": "agent-1", "task_id": "t1"}
    events = [
        {**base, "event_id": "s", "event_type": "task.started", "event_time": T0},
        {**base, "event_id": "i", "event_type": "credential.issued", "event_time": T0 + 1000,
         "credential_id": "c1"},
        {**base, "event_id": "c", "event_type": "task.completed", "event_time": T0 + 2000,
         "outcome": "success"},
    ]  # fmt: skip
    [finding] = ruletest.run_rule("SP-02", events + events[-1:])
    assert finding.subject == "t1" and set(finding.event_ids) == {"c", "i"}
    assert ruletest.run_rule("SP-02", events, until=T0 + 2000 + MINUTE) == []


def test_expectations_match_one_finding_each() -> None:
    """A loose expectation does not take the finding a stricter one needs."""
    assert ruletest.compare([], []) == []
    two = ruletest.run_rule(
        "AZ-02",
        [
            {**export(f"e{i}", 1, identity_id=f"agent-{i}"), "policy_decision": "deny",
             "outcome": "success"}
            for i in (1, 2)
        ],
    )  # fmt: skip
    loose = ruletest.expectation({"detector": "AZ-02"})
    strict = ruletest.expectation({"subject": "agent-1"})
    assert ruletest.compare(two, [loose, strict]) == []
    assert len(ruletest.compare(two, [strict, strict])) == 2  # one missing, one unexpected
