"""The README's step-by-step path, run as written (a new user's first hour, issue 16):
services > govpipe.env, the worker, simulate --load-registry, tail, report. It must end
with a report whose attributable rate is above 90% (an empty registry gave 0%)."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.embedded.ports import free_port
from pipeline.report import build_report
from pipeline.settings import load_settings

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
GOVPIPE = ".venv/bin/govpipe"


def readme_steps() -> list[str]:
    """The command lines of the README's step-by-step block, comments dropped."""
    text = README.read_text("utf-8")
    block = re.search(r"### Step by step.*?```bash\n(.*?)```", text, re.S)
    assert block, "README lost its step-by-step section"
    lines = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line]


def argv(command: str) -> list[str]:
    words = shlex.split(command)
    assert words[0] == GOVPIPE, command
    return [sys.executable, "-m", "pipeline", *words[1:]]


def test_the_readme_path_ends_with_an_attributable_report(tmp_path: Path) -> None:
    steps = readme_steps()
    assert steps[0] == f"{GOVPIPE} services > govpipe.env"
    assert steps[1] == f"source govpipe.env && {GOVPIPE} worker"
    assert steps[2] == "source govpipe.env"
    simulate, tail, report = steps[3:6]
    assert "--load-registry" in simulate

    base = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "GOVPIPE_"))}
    base.pop("REDIS_URL", None)
    base.pop("FAUST_DATADIR", None)
    env_file = tmp_path / "govpipe.env"
    with env_file.open("w") as out:
        services = subprocess.Popen(
            argv(f"{GOVPIPE} services"), cwd=tmp_path, env=base, stdout=out,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
    worker = None
    try:
        deadline = time.monotonic() + 60
        while "FAUST_DATADIR" not in env_file.read_text() and time.monotonic() < deadline:
            assert services.poll() is None, "services exited"
            time.sleep(0.2)
        exports = dict(
            line.removeprefix("export ").split("=", 1)
            for line in env_file.read_text().splitlines()
            if line.startswith("export ")
        )
        env = {**base, **exports, "GOVPIPE_WEB_PORT": str(free_port())}
        worker = subprocess.Popen(
            argv(f"{GOVPIPE} worker"), cwd=tmp_path, env=env,
            stdout=(tmp_path / "worker.log").open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        time.sleep(8)  # the worker joins its group
        short = simulate.replace("--duration 60", "--duration 15")
        done = subprocess.run(
            argv(short), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert "loaded the identity registry of seed 1" in done.stderr
        time.sleep(15)  # the worker catches up
        shown = subprocess.run(
            [*argv(tail), "--idle", "1"], cwd=tmp_path, env=env, capture_output=True,
            text=True, timeout=120,
        )  # fmt: skip
        assert shown.returncode == 0 and shown.stdout.strip(), shown.stderr
        written = subprocess.run(
            argv(report), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert written.returncode == 0, written.stderr
        assert (tmp_path / "report.html").is_file()

        settings = load_settings(
            kafka_bootstrap_servers=exports["KAFKA_BOOTSTRAP_SERVERS"],
            redis_url=exports["REDIS_URL"],
        )
        summary = build_report(settings, tmp_path / "check.html", idle_s=1.0).summary
        attributable = summary.governance[1]  # GOVERNANCE_RATES order
        assert attributable.denominator > 100
        assert attributable.rate is not None and attributable.rate > 0.9, attributable
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        services.send_signal(signal.SIGINT)
        services.wait(30)
