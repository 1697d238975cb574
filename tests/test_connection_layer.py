"""Regression tests for the connection layer: one owner of outgoing bytes, one
close table, a catch-all per connection, bounded writes, an awaited host lookup.

Each test here failed on the layer it replaced (FrameWire + Session).
"""

from __future__ import annotations

import logging
import socket

import pytest
import trio
import trio.testing
from websockets.trio.client import connect
from wsproto.events import BytesMessage, CloseConnection

from trio_ws_demo import BroadcastServer, InboxBudget, ServerOptions, serve
from trio_ws_demo.server.outbox import CHUNK_BYTES

from .conftest import StartServer, url_of
from .wsraw import RawClient

TIMEOUT = 10


async def test_a_slow_client_caught_mid_frame_still_gets_its_1008(
    start_server: StartServer,
) -> None:
    """A frame half written by the fast path is finished, then 1008 follows at once.

    The application broadcasts two big messages in a row: the first goes out
    partly (the reader's window is tiny), the second is over the budget of
    one message. The close must not wait for close_timeout (30 s).
    """
    server = await start_server(ServerOptions(budget=InboxBudget(max_messages=1), close_timeout=30))
    # Larger than any socket buffer here (tcp_wmem tops out at 4 MiB).
    messages = [b"a" * (16 * 2**20), b"b" * (16 * 2**20)]
    with trio.fail_after(TIMEOUT):
        client = await RawClient.connect(server.port, receive_buffer=4096)
        await trio.testing.wait_all_tasks_blocked()  # the server has opened it, and idles
        for message in messages:
            server.broadcast(message)  # no checkpoint in between
        events = await client.events_until_close()
        await client.stream.aclose()
    assert [type(e) for e in events] == [BytesMessage, CloseConnection]
    assert events[0].data == messages[0]  # type: ignore[attr-defined]
    assert events[1].code == 1008  # type: ignore[attr-defined]


@pytest.mark.parametrize("code", [1002, 1007, 1009])
async def test_a_peers_own_close_code_is_a_normal_close(
    server: BroadcastServer, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The peer's 1002/1007/1009 is its verdict, not bad input from it: flush, then answer."""
    caplog.set_level(logging.INFO, logger="trio_ws_demo")
    messages = ["x" * 600_000] + [f"queued {n}" for n in range(50)]
    with trio.fail_after(TIMEOUT):
        client = await RawClient.connect(server.port, receive_buffer=4096)
        burst = b"".join(client.frame(m) for m in messages) + client.close_frame(code)
        await client.stream.send_all(burst)
        events = await client.events_until_close()
        await client.stream.aclose()
        await trio.testing.wait_all_tasks_blocked()
    assert [e.data for e in events[:-1]] == messages  # type: ignore[attr-defined]
    assert isinstance(events[-1], CloseConnection) and events[-1].code == code
    closed = [r for r in caplog.records if getattr(r, "event", None) == "closed"]
    assert [r.end for r in closed] == ["peer_closed"]  # type: ignore[attr-defined]


class FaultyStream(trio.abc.Stream):
    """A server-side stream that fails with an unexpected error once armed."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.fail_receive = False
        self.fail_send = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.fail_send:
            raise RuntimeError("injected send failure")
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.inner.receive_some(max_bytes)
        if self.fail_receive:
            raise RuntimeError("injected receive failure")
        return data

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize("where", ["receive", "send"])
async def test_an_unexpected_error_closes_only_that_connection(
    server: BroadcastServer, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Logged once at ERROR with its traceback and peer; 1011 if the socket still
    works; handle_stream returns; everyone else keeps talking."""
    client_side, server_side = trio.testing.memory_stream_pair()
    faulty = FaultyStream(server_side)
    with trio.fail_after(TIMEOUT):
        async with (
            connect(url_of(server), proxy=None) as a,
            connect(url_of(server), proxy=None) as b,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(server.handle_stream, faulty)  # must not raise
            victim = await RawClient.over(client_side)
            assert server.clients == 3
            if where == "receive":
                faulty.fail_receive = True
                await victim.send("this read fails")
            else:
                faulty.fail_send = True
                await a.send("this write fails")
                assert await a.recv() == "this write fails"
                assert await b.recv() == "this write fails"
            events = await victim.events_until_close()
            await a.send("still here")
            assert await b.recv() == "still here"
            assert await a.recv() == "still here"
        await trio.testing.wait_all_tasks_blocked()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "connection handler failed" in errors[0].getMessage()
    assert "FaultyStream" in errors[0].getMessage()  # the peer, as memory streams name it
    assert errors[0].exc_info is not None
    assert f"injected {where} failure" in caplog.text
    if where == "receive":  # the socket still works: the client is told why
        assert isinstance(events[-1], CloseConnection) and events[-1].code == 1011
    else:
        assert not any(isinstance(e, CloseConnection) for e in events)
    assert server.statistics().connection_errors == 1
    assert server.clients == 0


class GatedStream(trio.abc.Stream):
    """A server-side stream whose writes wait for a gate; it records their sizes."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.gate = trio.Event()
        self.gate.set()
        self.writes: list[int] = []

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.gate.wait()
        self.writes.append(len(data))
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_backlog_is_written_in_bounded_chunks(server: BroadcastServer) -> None:
    """Memory stays within the budget: a backlog is never joined into one buffer."""
    client_side, server_side = trio.testing.memory_stream_pair()
    gated = GatedStream(server_side)
    messages = [bytes([n % 256]) * 10_000 for n in range(100)]
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.handle_stream, gated)
            reader = await RawClient.over(client_side)
            gated.gate = trio.Event()  # the reader stalls: a backlog builds up
            async with connect(url_of(server), proxy=None) as publisher:
                for message in messages:
                    await publisher.send(message)
                for message in messages:
                    assert await publisher.recv() == message
                stats = server.statistics()
                assert stats.queued_messages >= len(messages) - 1
                gated.gate.set()
                received = [await reader.next_message() for _ in messages]
            await reader.stream.send_all(reader.close_frame())
            await reader.events_until_close()
    assert received == messages
    largest_frame = 10_000 + 4
    assert max(gated.writes) <= CHUNK_BYTES + largest_frame
    assert server.statistics().queued_bytes == 0


class WaitingResolver(trio.abc.HostnameResolver):
    """Resolves ``chat.test`` to 127.0.0.1, but only once told to."""

    def __init__(self) -> None:
        self.release = trio.Event()
        self.asked: list[object] = []

    async def getaddrinfo(  # type: ignore[override]
        self,
        host: bytes | None,
        port: bytes | str | int | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[str, int]]]:
        self.asked.append(host)
        await self.release.wait()
        assert isinstance(port, int)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    async def getnameinfo(self, sockaddr: tuple[str, int], flags: int) -> tuple[str, str]:
        raise NotImplementedError


async def test_the_host_lookup_is_awaited_not_blocking() -> None:
    """While the name resolves, other tasks run (the lookup goes through trio)."""
    resolver = WaitingResolver()
    trio.socket.set_custom_hostname_resolver(resolver)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_release_when_asked, resolver)
            port = await nursery.start(serve, "chat.test", 0)
            async with connect(f"ws://127.0.0.1:{port}/", proxy=None) as ws:
                await ws.send("resolved")
                assert await ws.recv() == "resolved"
            nursery.cancel_scope.cancel()
    assert resolver.asked == [b"chat.test"]


async def _release_when_asked(resolver: WaitingResolver) -> None:
    await trio.testing.wait_all_tasks_blocked()
    assert resolver.asked, "the server should be waiting for its lookup"
    resolver.release.set()


async def test_text_frames_from_the_fast_path_and_the_writer_keep_their_order(
    server: BroadcastServer,
) -> None:
    """Idle writes go straight to the socket, a backlog through the writer: in order."""
    messages = [f"m{n}:" + "y" * (n * 997 % 20_000) for n in range(300)]
    with trio.fail_after(TIMEOUT):
        reader = await RawClient.connect(server.port, receive_buffer=8192)
        async with connect(url_of(server), proxy=None) as publisher:
            for message in messages:
                await publisher.send(message)
                assert await publisher.recv() == message
            received = [await reader.next_message() for _ in messages]
        await reader.stream.aclose()
    assert received == messages
