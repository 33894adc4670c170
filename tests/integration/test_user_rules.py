"""A user's own rule, without editing govpipe (issue 13, "Must show").

One rule file and its test file are written into a temporary rules directory
(the README's example, ``tests/support/user_rule.py``). Then, through the real
commands and a real worker: `govpipe detectors list` shows it, its pytest file
passes, `govpipe rules test` passes its cases and fails a wrong expectation, a policy
file tunes it (threshold and severity, seen in `rules test` and in the alerts), and a
worker started with that directory routes and runs it through the broker.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.kafka import consume_until_quiet, produce
from tests.support.user_rule import RULE, RULE_FILE, TEST, TEST_FILE

pytestmark = pytest.mark.integration

T0 = "2026-01-05T09:00:00Z"
POLICY = "version: 1\ndetectors:\n  ACME-01:\n    severity: high\n    thresholds: {max_rows: 500}\n"


def export(event_id: str, identity: str, rows: int) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_type": "action",
        "event_time": T0,
        "platform": "crm",
        "identity_id": identity,
        "action": "crm.accounts.export",
        "attributes": {"rows": str(rows)},
    }


EVENTS = [export("e1", "agent-7", 800), export("e2", "agent-8", 300), export("e3", "agent-9", 5000)]


def govpipe(*args: str, rules_dir: Path | None, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GOVPIPE_RULES_DIR", "GOVPIPE_POLICY")}
    if rules_dir is not None:
        env["GOVPIPE_RULES_DIR"] = str(rules_dir)
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / RULE_FILE).write_text(RULE)
    (folder / TEST_FILE).write_text(TEST)
    return folder


def test_listed_tested_and_tuned_by_the_commands(rules: Path, tmp_path: Path) -> None:
    listing = govpipe("detectors", "list", rules_dir=rules, cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if line.startswith("ACME-01"))
    assert "Large export" in row and "medium" in row and "identity" in row
    # paths are shown relative to the working directory when inside it
    assert f"source: user rule (GOVPIPE_RULES_DIR) rules/{RULE_FILE}" in listing.stdout
    assert "ACME-01" not in govpipe("detectors", "list", rules_dir=None, cwd=tmp_path).stdout

    # its own pytest file passes, as the user's CI would run it
    pytest_run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(rules)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert pytest_run.returncode == 0, pytest_run.stdout + pytest_run.stderr
    assert "2 passed" in pytest_run.stdout

    # rules test: the default threshold (1000) lets only the 5000-row export through
    events = jsonl(tmp_path / "events.jsonl", EVENTS)
    expected = jsonl(
        tmp_path / "expected.jsonl",
        [
            {
                "detector": "ACME-01",
                "subject": "agent-9",
                "event_ids": ["e3"],
                "facts": {"rows": 5000},
            }
        ],
    )
    run = govpipe(
        "rules", "test", str(rules / RULE_FILE), "--events", str(events), "--expect", str(expected),
        rules_dir=None, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("ACME-01  medium  agent-9  2026-01-05T09:00:00.000Z  events=e3")
    assert "ok: 1 finding(s) of ACME-01 over 3 event(s), as expected" in run.stderr

    # ... by id as well, when the worker's rules dir holds it
    by_id = govpipe(
        "rules", "test", "ACME-01", "--events", str(events), rules_dir=rules, cwd=tmp_path
    )
    assert by_id.returncode == 0 and by_id.stdout == run.stdout, by_id.stderr

    # a wrong expectation fails with a diff
    wrong = jsonl(tmp_path / "wrong.jsonl", [{"subject": "agent-7"}])
    failed = govpipe(
        "rules", "test", str(rules / RULE_FILE), "--events", str(events), "--expect", str(wrong),
        rules_dir=None, cwd=tmp_path,
    )  # fmt: skip
    assert failed.returncode == 1, failed.stdout + failed.stderr
    lines = failed.stdout.splitlines()
    assert f"- {wrong}:1: " + '{"subject":"agent-7"}' in lines
    assert any(line.startswith("+ ACME-01  medium  agent-9") for line in lines)

    # the policy file tunes it like a built-in: max_rows 500 and severity high
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    check = govpipe("policy", "check", str(policy), rules_dir=rules, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    unknown = govpipe("policy", "check", str(policy), rules_dir=None, cwd=tmp_path)
    assert unknown.returncode == 1 and "ACME-01: unknown detector" in unknown.stderr
    tuned = govpipe(
        "rules", "test", str(rules / RULE_FILE), "--events", str(events), "--policy", str(policy),
        "--json", rules_dir=None, cwd=tmp_path,
    )  # fmt: skip
    assert tuned.returncode == 0, tuned.stderr
    found = [orjson.loads(line) for line in tuned.stdout.splitlines()]
    assert [(f["subject"], f["severity"], f["facts"]["rows"]) for f in found] == [
        ("agent-7", "high", 800),
        ("agent-9", "high", 5000),
    ]


def test_fires_through_the_broker_in_a_worker_with_the_rules_dir(
    rules: Path, tmp_path: Path, settings_factory: Any, worker_factory: Any
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    settings = settings_factory(rules_dir=rules, policy_file=policy)
    worker = worker_factory(settings).start(timeout=90)
    bootstrap = settings.kafka_bootstrap_servers
    produce(bootstrap, settings.topic_events, [orjson.dumps(EVENTS)], partition=0)
    alerts = [
        orjson.loads(r.value)
        for r in consume_until_quiet(bootstrap, settings.topic_alerts, quiet_s=5, expect=2)
        if r.value is not None
    ]
    mine = sorted(
        (a["identity_id"], a["severity"], a["evidence"]["facts"]["rows"])
        for a in alerts
        if a["detector"] == "ACME-01"
    )
    assert mine == [("agent-7", "high", 800), ("agent-9", "high", 5000)], alerts
    assert worker.alive()
