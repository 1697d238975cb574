"""Keepalive (on a virtual clock) and graceful shutdown (library and CLI)."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from websockets.exceptions import ConnectionClosed as WsClosed
from websockets.trio.client import connect
from wsproto.events import CloseConnection, Ping

from trio_ws_demo import BroadcastServer, ServerOptions, serve

from .processes import listening_port, run_cli
from .wsraw import RawClient

TIMEOUT = 20


async def test_a_peer_that_never_answers_pings_is_released(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = BroadcastServer(ServerOptions(ping_interval=20, ping_timeout=20))
    client_side, server_side = trio.testing.memory_stream_pair()
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run, "127.0.0.1", 0)  # keepalive runs with the server
            nursery.start_soon(server.handle_stream, server_side)
            client = await RawClient.over(client_side)
            assert server.clients == 1
            opened = trio.current_time()
            # Read (so we see the pings) but never answer them.
            events = []
            while True:
                try:
                    events.append(await client.next_event())
                except EOFError:
                    break
            nursery.cancel_scope.cancel()
    assert trio.current_time() - opened == pytest.approx(40)
    assert any(isinstance(e, Ping) for e in events)
    # The close table's row: a silent peer gets no close frame, the TCP connection just ends.
    assert not any(isinstance(e, CloseConnection) for e in events)
    assert server.clients == 0
    assert server.statistics().subscribers == 0


async def test_a_peer_that_answers_pings_stays(autojump_clock: trio.testing.MockClock) -> None:
    server = BroadcastServer(ServerOptions(ping_interval=20, ping_timeout=20))
    client_side, server_side = trio.testing.memory_stream_pair()
    pings = 0
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run, "127.0.0.1", 0)  # keepalive runs with the server
            nursery.start_soon(server.handle_stream, server_side)
            client = await RawClient.over(client_side)
            with trio.move_on_after(290):  # virtual: pings at 20, 40, ... 280 s
                while True:
                    event = await client.next_event()
                    if isinstance(event, Ping):
                        pings += 1
                        await client.stream.send_all(client.ws.send(event.response()))
            assert server.clients == 1
            await client.stream.send_all(client.close_frame())
            events = await client.events_until_close()
            nursery.cancel_scope.cancel()
    assert pings == 14
    assert isinstance(events[-1], CloseConnection) and events[-1].code == 1000


async def serve_in(
    scope: trio.CancelScope,
    options: ServerOptions | None = None,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run serve() under *scope*, so a test can cancel the server and nothing else."""
    with scope:
        await serve("127.0.0.1", 0, options, task_status=task_status)


async def test_cancelling_the_server_closes_clients_with_1001_after_flushing(
    nursery: trio.Nursery,
) -> None:
    """Everything published before the shutdown reaches b, then close 1001."""
    server = BroadcastServer()
    server_scope = trio.CancelScope()

    async def run_server(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        with server_scope:
            await server.run("127.0.0.1", 0, task_status=task_status)

    with trio.fail_after(TIMEOUT):
        url = f"ws://127.0.0.1:{await nursery.start(run_server)}"
        # a never reads its own echoes; max_queue=None keeps it reading the socket.
        async with connect(url, proxy=None, max_queue=None) as a, connect(url, proxy=None) as b:
            for n in range(100):
                await a.send(f"m{n}")
            received = [await b.recv()]  # the broadcast is under way
            server_scope.cancel()
            with pytest.raises(WsClosed) as closed:
                while True:
                    received.append(await b.recv())
    # Reading stops at shutdown, so not all 100 need be published; but all
    # that were must have been delivered before the close frame.
    assert received == [f"m{n}" for n in range(server.statistics().published)]
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1001, "server shutting down")


# shutdown_timeout, exactly, and refusal *during* the 1001 drain: tests/test_timeouts.py.


async def test_the_listening_socket_is_closed_once_the_server_stops() -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve, "127.0.0.1", 0)
            nursery.cancel_scope.cancel()
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", port)


async def test_sigterm_closes_listeners_with_1001_and_exits_0() -> None:
    with trio.fail_after(TIMEOUT):
        async with run_cli("serve", "--port", "0") as server:
            url = f"ws://127.0.0.1:{await listening_port(server)}"
            async with run_cli("echo", url, "--listen") as listener:
                await listener.read_until("Server sent:  Hello, WebSocket!")
                server.process.terminate()
                assert await server.process.wait() == 0
                assert await listener.process.wait() == 1
                err = await listener.stderr()
            log = await server.stderr()
    assert err.splitlines() == [
        "Connection opened",
        "Connection error: the server closed the connection with code 1001 (server shutting down)",
    ]  # one line for one close
    assert "shutting down: closing 1 connections" in log
    assert "code 1001 'server shutting down'" in log
    assert "Traceback" not in log


async def test_a_second_sigint_exits_at_once() -> None:
    with trio.fail_after(TIMEOUT):
        async with run_cli(
            "serve", "--port", "0", "--shutdown-timeout", "600", "--close-timeout", "600"
        ) as server:
            port = await listening_port(server)
            mute = await RawClient.connect(port)  # will never answer the close
            await server.log.wait_for("connected")
            server.interrupt()
            await server.log.wait_for("shutting down: closing 1 connections")
            server.interrupt()
            assert await server.process.wait() == 0
            await mute.stream.aclose()
