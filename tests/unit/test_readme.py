"""The README's detector table is generated from the registry and must stay in sync."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"


def test_detector_table_matches_registry(capsys) -> None:
    assert main(["detectors", "list", "--markdown"]) == 0
    generated = capsys.readouterr().out.strip()
    text = README.read_text("utf-8")
    match = re.search(r"<!-- detectors:start[^>]*-->\n(.*?)\n<!-- detectors:end -->", text, re.S)
    assert match, "README lost its detectors markers"
    assert match.group(1).strip() == generated, (
        "README detector table is stale: regenerate it with `govpipe detectors list --markdown`"
    )


def test_readme_names_the_two_commands() -> None:
    text = README.read_text("utf-8")
    assert "make demo" in text and "make test" in text


def test_adding_a_detection_shows_the_tested_rule_file() -> None:
    """The example is the rule file the user-rules integration test writes and runs."""
    from tests.support.user_rule import RULE

    text = README.read_text("utf-8")
    match = re.search(r"## Adding a detection\n.*?```python\n(.*?)```", text, re.S)
    assert match, "README lost its 'Adding a detection' example"
    assert match.group(1) == RULE, "README example differs from tests/support/user_rule.py"
