"""`simulate --rate R` delivers R events/s from the first second (issue 16, item 6)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from pipeline.settings import settings_env

pytestmark = pytest.mark.integration


def test_rate_from_the_start_and_event_times_not_ahead(settings_factory) -> None:
    settings = settings_factory()
    started_ms = int(time.time() * 1000)
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "simulate", "--rate", "200", "--duration", "6",
         "--no-finish", "--seed", "3"],
        env={**os.environ, **settings_env(settings)},
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rates = [
        int(r.replace(",", "")) for r in re.findall(r"events sent \(([\d,]+) ev/s\)", done.stderr)
    ]
    assert rates and min(rates) >= 180, rates  # no warm-up minute at half the rate
    sent = int(re.search(r"sent (\d+) events", done.stderr).group(1))
    assert sent >= 0.9 * 200 * 6, sent
    last = re.search(r"event time \S+ \.\. (\S+)$", done.stderr.strip()).group(1)
    from pipeline.records import to_epoch_ms

    assert to_epoch_ms(last) <= int(time.time() * 1000) + 1000  # never ahead of the wall clock
    first = re.search(r"event time (\S+) \.\.", done.stderr).group(1)
    assert started_ms - 130_000 <= to_epoch_ms(first) <= started_ms
