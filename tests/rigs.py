"""Test rigs shared by several test modules (test modules never import one another).

An outbox over a socket pair, a TLS pair taken over by an outbox, the payload
sizes that cross every frame-length boundary, a TCP cable a test can cut, and a
log watch that wakes a test when a record it waits for is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio
import trustme

from trio_ws_demo.hub import InboxBudget
from trio_ws_demo.server.outbox import Outbox
from trio_ws_demo.server.tls import TlsChannel
from trio_ws_demo.server.transport import Transport
from trio_ws_demo.stats import Traffic

from .conftest import client_context, server_context


def outbox_pair(
    nursery: trio.Nursery, budget: InboxBudget | None = None
) -> tuple[Outbox, socket.socket]:
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    ours.setblocking(False)
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
    outbox = Outbox(Transport(stream, ours), nursery, budget or InboxBudget(), Traffic())
    outbox.opened()
    return outbox, peer


@asynccontextmanager
async def taken_over(
    ca: trustme.CA, nursery: trio.Nursery, *, send_buffer: int | None = None
) -> AsyncIterator[tuple[TlsChannel, Outbox, trio.SSLStream[trio.SocketStream]]]:
    """A handshaken TLS pair over a socketpair: the server side a TlsChannel
    written by an open Outbox. Yields (channel, outbox, client)."""
    ours, theirs = socket.socketpair()
    if send_buffer is not None:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    ours.setblocking(False)
    channel = TlsChannel(
        trio.SocketStream(trio.socket.from_stdlib_socket(ours)), server_context(ca)
    )
    client = trio.SSLStream(
        trio.SocketStream(trio.socket.from_stdlib_socket(theirs)),
        client_context(ca),
        server_hostname="127.0.0.1",
    )
    try:
        async with trio.open_nursery() as handshakes:
            handshakes.start_soon(channel.do_handshake)
            handshakes.start_soon(client.do_handshake)
        outbox = Outbox(Transport(channel, ours, channel), nursery, InboxBudget(), Traffic())
        outbox.opened()
        yield channel, outbox, client
        await outbox.aclose()
    finally:
        await trio.aclose_forcefully(client)
        ours.close()
        theirs.close()


SIZES = [0, 1, 125, 126, 127, 65535, 65536, 65537, 300_000, 3, 70_000, 1000]


def payloads() -> list[bytes | str]:
    out: list[bytes | str] = []
    for n, size in enumerate(SIZES * 5):
        if n % 2:
            out.append(hashlib.sha256(str(n).encode()).digest() * (size // 32 + 1))
        else:
            out.append(("é☃" * size)[:size])
    return [p[: SIZES[i % len(SIZES)]] for i, p in enumerate(out)]


class Cable:
    """A TCP relay the test can cut, like a phone dropping its Wi-Fi."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cut_scope = trio.CancelScope()
        self._up = trio.Event()
        self._up.set()

    async def serve(self, task_status: trio.TaskStatus[int]) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._relay, listeners)

    def cut(self) -> None:
        """Drop every relayed connection; new ones are held until :meth:`restore`."""
        self.cut_scope.cancel()
        self.cut_scope = trio.CancelScope()
        self._up = trio.Event()

    def restore(self) -> None:
        self._up.set()

    async def _relay(self, client: trio.SocketStream) -> None:
        await self._up.wait()  # while the cable is cut, a reconnecting client just waits
        async with client, await trio.open_tcp_stream("127.0.0.1", self.port) as server:
            with self.cut_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_pump, client, server, nursery.cancel_scope)
                    nursery.start_soon(_pump, server, client, nursery.cancel_scope)


async def _pump(
    source: trio.abc.ReceiveStream, sink: trio.abc.SendStream, both: trio.CancelScope
) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    both.cancel()  # one side ended: end the other


class LogWatch(logging.Handler):
    """Keeps every record of a logger and wakes :meth:`until` as each comes: the
    server logs some lines after the client has its answer (an access line, a
    connection's ``closed``), and a record is the only event there is."""

    def __init__(self, name: str = "trio_ws_demo") -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._name = name
        self._changed = trio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self._changed.set()

    async def until(self, ready: Callable[[list[logging.LogRecord]], bool]) -> None:
        """Return once *ready*(records) holds (bound it with ``fail_after``)."""
        while not ready(self.records):
            self._changed = trio.Event()
            await self._changed.wait()

    def __enter__(self) -> LogWatch:
        logger = logging.getLogger(self._name)
        self._level = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logger = logging.getLogger(self._name)
        logger.removeHandler(self)
        logger.setLevel(self._level)
