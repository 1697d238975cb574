"""The close and shutdown timeouts, exact on a virtual clock, and their flags on a real ``serve``.

In-process tests use a lockstep stream pair (a write waits until the peer
reads it), so a client that stops reading blocks the server's writes as a full
socket would, and ``autojump_clock`` moves time only when everything waits:
the asserted durations are the timeouts themselves, to the virtual second.
Subprocess tests show that each flag reaches the server (a value far from
the default, crossed within a bound the default would miss).
"""

from __future__ import annotations

import pytest
import trio
import trio.testing
from wsproto.events import AcceptConnection, CloseConnection, Request

from trio_ws_demo import BroadcastServer, ServerOptions

from .processes import run_cli
from .wsraw import RawClient

TIMEOUT = 15


async def open_client(stream: trio.abc.Stream) -> RawClient:
    client = RawClient(stream)  # type: ignore[arg-type]
    await stream.send_all(client.ws.send(Request(host="127.0.0.1", target="/")))
    assert isinstance(await client.next_event(), AcceptConnection)
    return client


async def serving(
    nursery: trio.Nursery, options: ServerOptions
) -> tuple[BroadcastServer, trio.CancelScope, trio.abc.Stream, trio.Event]:
    """A server (its run() owns shutdown and keepalive) with one lockstep client
    stream; the event is set when the server is done with that connection."""
    server = BroadcastServer(options)
    scope = trio.CancelScope()

    async def run(task_status: trio.TaskStatus[None]) -> None:
        with scope:
            await server.run("127.0.0.1", 0, task_status=task_status)

    await nursery.start(run)
    client_side, server_side = trio.testing.lockstep_stream_pair()
    done = trio.Event()

    async def handle() -> None:
        await server.handle_stream(server_side)
        done.set()

    nursery.start_soon(handle)
    return server, scope, client_side, done


async def read_to_end(stream: trio.abc.Stream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


async def test_close_timeout_bounds_the_flush_then_the_frame_under_way(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Shutdown with a client that reads nothing: the flush gives up at
    close_timeout, the frame under way gets close_timeout more, then the
    connection is dropped (it cannot take a close frame mid-frame)."""
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            options = ServerOptions(close_timeout=5, shutdown_timeout=100)
            server, scope, client_side, done = await serving(nursery, options)
            await open_client(client_side)
            server.broadcast("x" * 100_000)  # the writer blocks: nobody reads
            server.broadcast("queued behind it")
            await trio.testing.wait_all_tasks_blocked()
            start = trio.current_time()
            scope.cancel()  # shutdown: 1001 after the flush
            await done.wait()
            assert trio.current_time() - start == pytest.approx(10, abs=0.01)
            nursery.cancel_scope.cancel()


async def test_close_timeout_bounds_the_wait_for_the_peers_answer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A client that reads our 1001 but never answers it: the socket is closed
    close_timeout after the close frame went out."""
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            options = ServerOptions(close_timeout=7, shutdown_timeout=100)
            _, scope, client_side, _ = await serving(nursery, options)
            client = await open_client(client_side)
            scope.cancel()
            event = await client.next_event()
            assert isinstance(event, CloseConnection) and event.code == 1001
            sent = trio.current_time()
            with pytest.raises(EOFError):
                await client.next_event()  # never answered: the server hangs up
            assert trio.current_time() - sent == pytest.approx(7, abs=0.01)
            nursery.cancel_scope.cancel()


async def test_shutdown_timeout_bounds_closing_everyone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Close and flush would take 2 x 60 s; shutdown_timeout ends it at 3 s."""
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            options = ServerOptions(close_timeout=60, shutdown_timeout=3)
            server, scope, client_side, done = await serving(nursery, options)
            await open_client(client_side)
            server.broadcast("y" * 100_000)  # never read
            await trio.testing.wait_all_tasks_blocked()
            start = trio.current_time()
            scope.cancel()
            await done.wait()
            assert trio.current_time() - start == pytest.approx(3, abs=0.01)
            nursery.cancel_scope.cancel()


async def test_handshakes_are_refused_while_shutdown_is_under_way(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """While the 1001 drain is still going on (a client that reads nothing), a
    new connection is not admitted."""
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            options = ServerOptions(close_timeout=50, shutdown_timeout=100)
            server, scope, client_side, _ = await serving(nursery, options)
            await open_client(client_side)
            server.broadcast("z" * 100_000)  # keeps the drain going
            await trio.testing.wait_all_tasks_blocked()
            scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert server.clients == 1  # still draining
            late_client, late_server = trio.testing.memory_stream_pair()
            nursery.start_soon(server.handle_stream, late_server)
            await late_client.send_all(
                b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            assert await late_client.receive_some() == b""  # dropped, not admitted
            assert server.clients == 1
            nursery.cancel_scope.cancel()


async def test_ping_interval_0_sends_no_pings(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(100_000):
        async with trio.open_nursery() as nursery:
            server, _, client_side, _ = await serving(nursery, ServerOptions(ping_interval=0))
            await open_client(client_side)
            with trio.move_on_after(10_000) as silent:  # a silent peer, for hours
                await client_side.receive_some()
            assert silent.cancelled_caught  # not a byte: no ping, no close
            assert server.clients == 1
            nursery.cancel_scope.cancel()


# -- the flags reach a real serve ---------------------------------------------


@pytest.mark.parametrize(
    ("flags", "reads", "within"),
    [
        # --close-timeout: a client that reads our 1001 but never answers it
        # holds the exit for close_timeout (default 5 s; shutdown_timeout 30).
        (["--close-timeout", "0.3", "--shutdown-timeout", "30"], True, 3.0),
        # --shutdown-timeout: a client that reads nothing would hold the exit for
        # 2 x close_timeout (60 s); shutdown_timeout ends it.
        (["--close-timeout", "30", "--shutdown-timeout", "0.3"], False, 3.0),
    ],
    ids=["close-timeout", "shutdown-timeout"],
)
async def test_the_timeout_flags_bound_a_real_shutdown(
    flags: list[str], reads: bool, within: float
) -> None:
    async with run_cli("serve", "--port", "0", "--log-level", "warning", *flags) as serve:
        line = await serve.readline()
        port = int(line.split()[2].rsplit(":", 1)[1])
        with trio.fail_after(TIMEOUT):
            client = await RawClient.connect(port, receive_buffer=4096)
            if not reads:
                publisher = await RawClient.connect(port)
                for _ in range(50):
                    await publisher.send(b"p" * 50_000)
                    await publisher.next_message()
                await publisher.stream.aclose()
        serve.interrupt()
        with trio.fail_after(within):  # the defaults would take 5 s or more
            if reads:
                event = await client.next_event()
                assert isinstance(event, CloseConnection) and event.code == 1001
            assert await serve.process.wait() == 0
        await client.stream.aclose()


async def test_ping_interval_0_on_the_command_line_sends_no_pings() -> None:
    async with run_cli(
        "serve", "--port", "0", "--ping-interval", "0", "--ping-timeout", "0.1"
    ) as serve:
        line = await serve.readline()
        port = int(line.split()[2].rsplit(":", 1)[1])
        with trio.fail_after(TIMEOUT):
            client = await RawClient.connect(port)
            # With --ping-interval 0.1 a ping would come within 0.1 s, and the
            # client be let go 0.1 s later; with 0, a second passes in silence.
            with trio.move_on_after(1) as silent:
                await client.stream.receive_some()
            assert silent.cancelled_caught
            await client.send("still here")
            assert await client.next_message() == "still here"
            await client.stream.aclose()
