"""`govpipe detectors list`."""

from __future__ import annotations

import argparse

import pytest

from pipeline.commands import detectors as command
from pipeline.detectors.registry import all_detectors


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return int(args.handler(args))


def test_text_listing(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["detectors", "list"]) == 0
    out = capsys.readouterr().out
    for det in all_detectors():
        assert det.spec.id in out and det.spec.title in out
    assert "max_lifetime_ai_agent_s=3600" in out and "OWASP-NHI NHI-07" in out


def test_markdown_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["detectors", "list", "--markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| id | title | severity | subject | window |")
    assert len(lines) == 2 + len(all_detectors())
    sp03 = next(line for line in lines if line.startswith("| SP-03 "))
    assert "| 7 d |" in sp03 and "window_s=604800" in sp03


def test_window_format() -> None:
    assert command.format_window(None) == "-"
    assert command.format_window(90_000) == "90 s"
    assert command.format_window(300_000) == "5 min"
    assert command.format_window(1500) == "1500 ms"
