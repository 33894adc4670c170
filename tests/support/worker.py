"""A `govpipe worker` subprocess for integration tests (so it can be kill -9'd)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipeline.settings import Settings, settings_env


class WorkerProcess:
    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def start(self, wait_ready: bool = True, timeout: float = 60.0) -> WorkerProcess:
        env = {**os.environ, **settings_env(self.settings), "PYTHONUNBUFFERED": "1"}
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "worker"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()
        if wait_ready:
            self.wait_for_log("Worker ready", timeout)
        return self

    def log_text(self) -> str:
        return self.log_path.read_text("utf-8", "replace")[self._log_offset :]

    def wait_for_log(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.log_text():
                return
            assert self.alive(), f"worker exited:\n{self.log_text()[-3000:]}"
            time.sleep(0.1)
        raise AssertionError(f"worker not ready in {timeout}s:\n{self.log_text()[-3000:]}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode
