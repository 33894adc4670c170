"""The README's Reliability table cites tests that exist (a renamed test breaks it here)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def reliability_rows() -> list[str]:
    text = (ROOT / "README.md").read_text("utf-8")
    match = re.search(r"\n## Reliability\n(.*?)\n## ", text, re.S)
    assert match, "README lost its Reliability section"
    return [line for line in match.group(1).splitlines() if line.startswith("| ")][2:]


def test_every_row_cites_a_test_that_exists() -> None:
    rows = reliability_rows()
    assert len(rows) >= 8
    for row in rows:
        cited = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", row)
        assert cited, f"a row without a test: {row[:80]}"
        for path, function in cited:
            source = (ROOT / path).read_text("utf-8")
            if function:
                assert f"def {function}(" in source, f"{path} has no {function}"
            else:
                assert "\ndef test_" in source, f"{path} has no test"
