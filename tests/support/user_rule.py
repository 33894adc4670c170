"""The user rule of README.md's "Adding a detection" and its test file, as text.

``tests/integration/test_user_rules.py`` writes both into a rules directory and runs
them through every command and a worker; ``tests/unit/test_readme.py`` checks that the
README shows this rule file word for word.
"""

from __future__ import annotations

RULE_FILE = "acme_01.py"
RULE = '''\
"""ACME-01: one export by an agent moved more rows than max_rows."""

from __future__ import annotations

from pipeline.detectors.base import Context, DetectorSpec, Event
from pipeline.detectors.kinds import Facts, single_event

SPEC = DetectorSpec(
    id="ACME-01",
    title="Large export",
    description="One export action moved more rows than max_rows.",
    severity="medium",
    subject="identity",
    event_types=frozenset({"action"}),
    window_ms=None,
    thresholds={"max_rows": 1000},
    frameworks=(),
    remediation="Check that the export was meant to be this large; narrow the agent's scopes.",
)


def judge(event: Event, ctx: Context) -> Facts | None:
    rows = event["attributes"].get("rows", "")
    if not (event.get("action") or "").endswith(".export") or not rows.isdigit():
        return None
    if int(rows) <= ctx.thresholds["max_rows"]:
        return None
    return {"action": event["action"], "rows": int(rows)}


DETECTOR = single_event(SPEC, judge=judge)
'''

TEST_FILE = "test_acme_01.py"
TEST = '''\
"""ACME-01 fires above max_rows and stays quiet at it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.ruletest import load_rule, run_rule

RULE = load_rule(Path(__file__).with_name("acme_01.py"))


def export(rows: int) -> dict[str, Any]:
    return {
        "event_id": f"e{rows}",
        "event_type": "action",
        "event_time": "2026-01-05T09:00:00Z",
        "platform": "crm",
        "identity_id": "agent-7",
        "action": "crm.accounts.export",
        "attributes": {"rows": str(rows)},
    }


def test_fires_above_max_rows() -> None:
    [finding] = run_rule(RULE, [export(5000)])
    assert finding.detector == "ACME-01" and finding.subject == "agent-7"
    assert finding.facts == {"action": "crm.accounts.export", "rows": 5000}


def test_quiet_at_max_rows_and_on_reads() -> None:
    read = {**export(9000), "event_id": "r1", "action": "crm.accounts.read"}
    assert run_rule(RULE, [export(1000), read]) == []
'''
