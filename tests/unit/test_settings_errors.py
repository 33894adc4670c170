"""A bad setting is reported with the environment variable's real name (issue 16)."""

from __future__ import annotations

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import load_settings


def test_bad_values_name_the_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOVPIPE_BATCH_MAX_RECORDS", "abc")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "nohostport")
    monkeypatch.setenv("FAUST_DATADIR", "")
    monkeypatch.setenv("GOVPIPE_WORKER_STAGES", "[3]")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "GOVPIPE_BATCH_MAX_RECORDS: Input should be a valid integer" in message
    assert "KAFKA_BOOTSTRAP_SERVERS: Value error" in message
    assert "GOVPIPE_WORKER_STAGES.0: Input should be 1 or 2" in message
    assert " BATCH_MAX_RECORDS" not in message and ";BATCH" not in message
