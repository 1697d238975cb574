"""The server over real loopback sockets, seen by our client, `websockets` and raw wsproto."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from websockets.exceptions import ConnectionClosed as WsClosed
from websockets.trio.client import connect
from wsproto.events import CloseConnection

from trio_ws_demo import (
    BroadcastServer,
    InboxBudget,
    ServerOptions,
    SlowClientPolicy,
    run_client,
    serve,
)

from .conftest import StartServer, url_of
from .wsraw import RawClient

TIMEOUT = 10


def ws_connect(server: BroadcastServer):  # type: ignore[no-untyped-def]
    return connect(url_of(server), proxy=None, compression=None, max_size=None)


async def test_nursery_start_returns_the_bound_port_and_cancel_stops(nursery: trio.Nursery) -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as inner:
            port = await inner.start(serve, "127.0.0.1", 0)
            assert isinstance(port, int) and port > 0
            result = await run_client(f"ws://127.0.0.1:{port}", ["ping"])
            assert result.ok
            inner.cancel_scope.cancel()
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", port)


async def test_text_and_binary_are_relayed_byte_exact(server: BroadcastServer) -> None:
    binary = bytes(range(256)) * 3
    text = "héllo ☃ \x00 🎉"
    with trio.fail_after(TIMEOUT):
        async with ws_connect(server) as sender, ws_connect(server) as other:
            await sender.send(text)
            await sender.send(binary)
            for peer in (sender, other):
                first = await peer.recv()
                second = await peer.recv()
                assert first == text and isinstance(first, str)
                assert second == binary and isinstance(second, bytes)


async def test_our_client_sees_its_echo(server: BroadcastServer) -> None:
    with trio.fail_after(TIMEOUT):
        result = await run_client(url_of(server), ["one", b"two"])
    assert result.ok
    assert result.sent == ["one", b"two"]
    assert result.received == ["one", b"two"]
    assert result.close_code == 1000


async def test_order_is_kept_for_every_sender_across_20_clients(server: BroadcastServer) -> None:
    clients, per_client = 20, 50
    seen: dict[int, list[str]] = {}

    async def client(index: int, all_connected: trio.Event, connected: list[int]) -> None:
        async with ws_connect(server) as ws:
            connected.append(index)
            if len(connected) == clients:
                all_connected.set()
            await all_connected.wait()

            async def send_all() -> None:
                for n in range(per_client):
                    await ws.send(f"{index}:{n}")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_all)
                received = [await ws.recv() for _ in range(clients * per_client)]
            seen[index] = received  # type: ignore[assignment]

    with trio.fail_after(30):
        all_connected = trio.Event()
        connected: list[int] = []
        async with trio.open_nursery() as nursery:
            for i in range(clients):
                nursery.start_soon(client, i, all_connected, connected)
    assert len(seen) == clients
    for received in seen.values():
        by_sender: dict[str, list[int]] = {}
        for message in received:
            sender, n = message.split(":")
            by_sender.setdefault(sender, []).append(int(n))
        assert len(by_sender) == clients
        assert all(ns == list(range(per_client)) for ns in by_sender.values())


async def stream_to_healthy_clients(
    server: BroadcastServer, count: int, payload_size: int, healthy: int = 2
) -> None:
    """One publisher sends *count* messages; every healthy client must get all of them in order."""

    async def reader(ws, ready: trio.Event, done: list[int]) -> None:  # type: ignore[no-untyped-def]
        ready.set()
        for n in range(count):
            message = await ws.recv()
            assert message[:8] == f"{n:08d}".encode()
        done.append(1)

    done: list[int] = []
    async with ws_connect(server) as publisher, trio.open_nursery() as nursery:
        peers = []
        for _ in range(healthy):
            peers.append(await nursery.start(_open_reader, server, reader, count, done))
        nursery.start_soon(reader, publisher, trio.Event(), done)
        for n in range(count):
            await publisher.send(f"{n:08d}".encode() + b"x" * (payload_size - 8))
    assert len(done) == healthy + 1


async def _open_reader(server, reader, count, done, task_status=trio.TASK_STATUS_IGNORED):  # type: ignore[no-untyped-def]
    async with ws_connect(server) as ws:
        ready = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader, ws, ready, done)
            await ready.wait()
            task_status.started(ws)


async def test_a_stuck_client_is_closed_with_1008_and_stalls_no_one(
    start_server: StartServer,
) -> None:
    budget = InboxBudget(max_messages=1000, max_bytes=256 * 1024)
    server = await start_server(ServerOptions(budget=budget, close_timeout=60))
    with trio.fail_after(30):
        stuck = await RawClient.connect(server.port, receive_buffer=4096)
        await stream_to_healthy_clients(server, count=400, payload_size=16 * 1024)
        stats = server.statistics()
        assert stats.slow_closed == 1
        # The stuck client's inbox was released; what remains queued is within budget.
        assert stats.queued_bytes <= budget.max_bytes * stats.subscribers
        # Once it reads again it finds a 1008 close frame after the frames that fitted.
        events = await stuck.events_until_close()
        await stuck.stream.aclose()
    assert isinstance(events[-1], CloseConnection)
    assert (events[-1].code, events[-1].reason) == (1008, "slow consumer")
    assert 0 < len(events) - 1 < 400


async def test_drop_policy_keeps_a_stuck_client_connected_within_budget(
    start_server: StartServer,
) -> None:
    budget = InboxBudget(max_messages=1000, max_bytes=256 * 1024)
    server = await start_server(ServerOptions(budget=budget, slow_client=SlowClientPolicy.DROP))
    with trio.fail_after(30):
        stuck = await RawClient.connect(server.port, receive_buffer=4096)
        await stream_to_healthy_clients(server, count=400, payload_size=16 * 1024)
        stats = server.statistics()
        assert stats.slow_closed == 0
        assert stats.dropped > 0
        assert stats.queued_bytes <= budget.max_bytes
        assert server.clients == 1  # the others have left; the stuck client is still here
        # ... and once it reads, what was kept and then new messages reach it.
        server.broadcast("after the flood")
        while (message := await stuck.next_message()) != "after the flood":
            assert len(message) == 16 * 1024
        await stuck.vanish()


async def test_a_client_that_vanishes_mid_broadcast_disturbs_no_one(
    server: BroadcastServer,
) -> None:
    with trio.fail_after(30):
        vanishing = [await RawClient.connect(server.port, receive_buffer=4096) for _ in range(5)]
        async with ws_connect(server) as publisher, ws_connect(server) as healthy:
            for n in range(500):
                await publisher.send(f"{n:08d}".encode() + b"x" * 1016)
                if n == 100:  # mid-broadcast: their sockets hold unread frames
                    for client in vanishing:
                        await client.vanish()
            for ws in (healthy, publisher):  # everyone else gets the whole stream, in order
                for n in range(500):
                    assert (await ws.recv())[:8] == f"{n:08d}".encode()
            await trio.testing.wait_all_tasks_blocked()
            assert server.clients == 2  # the server noticed: the vanished ones are gone
        assert server.connection_errors == 0


@pytest.mark.parametrize("first_size", [10, 600_000], ids=["small", "large-first"])
async def test_messages_then_close_at_once_still_get_their_echoes(
    server: BroadcastServer, first_size: int
) -> None:
    """RFC 6455 §5.5.1: queued messages go out before the server answers a close.

    With a large first echo the send loop is still writing when the close
    arrives, so the later echoes are only in the inbox: they must not be lost.
    """
    messages = ["x" * first_size] + [f"Hello, WebSocket! {n}" for n in range(100)]
    with trio.fail_after(TIMEOUT):
        client = await RawClient.connect(server.port, receive_buffer=4096)
        burst = b"".join(client.frame(m) for m in messages) + client.close_frame()
        await client.stream.send_all(burst)
        events = await client.events_until_close()
        await client.stream.aclose()
    assert [e.data for e in events[:-1]] == messages  # type: ignore[attr-defined]
    assert isinstance(events[-1], CloseConnection) and events[-1].code == 1000


async def test_echo_mode_answers_only_the_sender(start_server: StartServer) -> None:
    server = await start_server(ServerOptions(echo=True))
    with trio.fail_after(TIMEOUT):
        async with ws_connect(server) as a, ws_connect(server) as b:
            await a.send("for a")
            await b.send("for b")
            assert await a.recv() == "for a"
            assert await b.recv() == "for b"
            await a.send("again")
            assert await a.recv() == "again"
            # Had "again" been relayed to b, it would sit in b's inbox before this.
            await b.send("b2")
            assert await b.recv() == "b2"


async def test_websockets_client_closes_cleanly(server: BroadcastServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with ws_connect(server) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
        with pytest.raises(WsClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1000
