"""The worker's log while the broker is away: one line when it goes, one when it is back."""

from __future__ import annotations

import io
import logging
import time

from pipeline.observability import BrokerOutageFilter, RedactingFormatter


def test_connection_errors_collapse_into_two_lines() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(BrokerOutageFilter(quiet_s=0.3))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        aiokafka = logging.getLogger("aiokafka")
        fetcher = logging.getLogger("aiokafka.consumer.fetcher")
        for _ in range(200):
            aiokafka.error("Unable connect to node with id %d: %s", 111, "[Errno 111] refused")
            fetcher.error("Failed fetch messages from 111: NodeNotReadyError: not ready")
        logging.getLogger("pipeline.app").warning("something else entirely")
        deadline = time.monotonic() + 5
        while "reachable again" not in stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        root.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("WARNING govpipe.broker: broker unreachable (aiokafka: Unable")
    assert lines[1] == "WARNING pipeline.app: something else entirely"
    assert "broker reachable again" in lines[2] and "(399 lines held back)" in lines[2]
