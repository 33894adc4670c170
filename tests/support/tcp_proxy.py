"""A TCP proxy for tests that can cut the line: every connection dropped, new ones refused.

It runs its own asyncio loop in a thread, so synchronous tests drive it:

    proxy = TcpProxy("127.0.0.1", broker_port).start()
    ...
    proxy.down()   # close the listening socket (connect: ECONNREFUSED) and reset
                   # every open connection
    proxy.up()     # listen again on the same port

Kafka clients reconnect to the address the broker advertises in its metadata,
so a proxy in front of a broker only sees every connection if the broker
advertises the proxy's address (see ``tests/integration/test_broker_outage.py``).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Coroutine
from typing import Any

from pipeline.embedded.ports import free_port


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self.port = port or free_port(self.host)
        self.accepted = 0
        #: monotonic time of each accepted connection (tells when clients came back)
        self.accepted_at: list[float] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _call(self, coro: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> TcpProxy:
        self._thread.start()
        self.up()
        return self

    def up(self) -> None:
        """Listen (again) on the proxy's port."""
        self._call(self._listen())

    def down(self) -> None:
        """Refuse new connections and reset every open one."""
        self._call(self._drop())

    def stop(self) -> None:
        if self._thread.is_alive():
            self.down()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    async def _listen(self) -> None:
        if self._server is not None:
            return
        deadline = time.monotonic() + 10
        while True:
            try:
                self._server = await asyncio.start_server(
                    self._handle, self.host, self.port, reuse_address=True
                )
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def _drop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._conns):
            _reset(writer)
        self._conns.clear()
        if server is not None:
            await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._server is None:
            _reset(writer)
            return
        self.accepted += 1
        self.accepted_at.append(time.monotonic())
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _reset(writer)
            return
        self._conns.update((writer, up_writer))
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._conns.discard(w)
                _reset(w)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError, asyncio.CancelledError):
        pass
    finally:
        _reset(writer)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a dropped link or a dead peer looks."""
    if writer.is_closing():
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()
