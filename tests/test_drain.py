"""A graceful drain (issue 29, item 3): SIGTERM spreads the 1001 closes over
``--drain-window``, so that thousands of clients do not reconnect to the other
processes in the same second.

Before, SIGTERM closed every client in one instant and the process was gone;
now ``/readyz`` says 503 ``draining`` first, new upgrades get 503 with
``Retry-After``, and the closes come one by one over the window. The spread is
checked on a real ``serve`` with a robust lower bound only; the exact schedule
(the k-th of N at ``window * k / N``) on a virtual clock through the library's
:meth:`BroadcastServer.drain`.
"""

from __future__ import annotations

import json
import signal

import pytest
import trio
import trio.testing
from websockets.exceptions import ConnectionClosed
from websockets.trio.client import connect
from wsproto.events import CloseConnection

from trio_ws_demo import BroadcastServer, ServerOptions

from .backplane_rigs import V1, frames, serve, until_frame
from .processes import Process, listening_port, run_cli
from .redis_server import RedisServer, require_redis
from .wsraw import RawClient, http_exchange, upgrade_request

TIMEOUT = 30
COUNT = 20
WINDOW = ServerOptions().drain_window


async def readyz(port: int) -> tuple[int, dict[str, str]]:
    answer = await http_exchange(port, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


async def until_not_ready(port: int) -> tuple[float, dict[str, str]]:
    """Poll ``/readyz`` (every 10 ms: there is no event to wait for) until it
    says 503; when that answer came, and its body."""
    while True:
        try:
            status, body = await readyz(port)
        except OSError:
            raise AssertionError("the server stopped listening before /readyz said 503") from None
        if status == 503:
            return trio.current_time(), body
        await trio.sleep(0.01)


async def await_close(client: RawClient, closes: list[tuple[float, int | None]]) -> None:
    """Record when the server's close frame came and its code; answer it."""
    async with client.stream:
        try:
            event = await client.next_event()
        except EOFError:
            closes.append((trio.current_time(), None))  # dropped without a close frame
            return
        assert isinstance(event, CloseConnection), event
        closes.append((trio.current_time(), event.code))
        await client.stream.send_all(client.ws.send(event.response()))


async def serve_with_clients(serve: Process, count: int) -> tuple[int, list[RawClient]]:
    port = await listening_port(serve)
    return port, [await RawClient.connect(port) for _ in range(count)]


async def test_sigterm_says_not_ready_then_spreads_the_closes_over_the_window() -> None:
    closes: list[tuple[float, int | None]] = []
    with trio.fail_after(TIMEOUT):
        async with run_cli("serve", "--port", "0", "--log-level", "warning") as serve:
            port, clients = await serve_with_clients(serve, COUNT)
            async with trio.open_nursery() as nursery:
                for client in clients:
                    nursery.start_soon(await_close, client, closes)
                serve.process.send_signal(signal.SIGTERM)
                not_ready_at, body = await until_not_ready(port)
            assert await serve.process.wait() == 0
    assert body["status"] == "draining"
    assert [code for _, code in closes] == [1001] * COUNT
    times = [at for at, _ in closes]
    assert not_ready_at < min(times)  # /readyz said 503 before anyone was told to go
    # Evenly over 5 s they span 4.75 s; at once (before) they spanned milliseconds.
    assert max(times) - min(times) >= WINDOW / 2


async def test_a_handshake_during_the_drain_gets_503_and_retry_after() -> None:
    with trio.fail_after(TIMEOUT):
        async with run_cli("serve", "--port", "0", "--log-level", "warning") as serve:
            port, (holder,) = await serve_with_clients(serve, 1)  # closed at the window's end
            serve.process.send_signal(signal.SIGTERM)
            await until_not_ready(port)
            answer = await http_exchange(port, upgrade_request())
            closes: list[tuple[float, int | None]] = []
            await await_close(holder, closes)
            assert await serve.process.wait() == 0
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 503 Service Unavailable"
    assert "retry-after: 1" in [line.lower() for line in lines]
    assert json.loads(body) == {"error": "server draining"}
    assert [code for _, code in closes] == [1001]


@pytest.mark.parametrize("signals", [["SIGINT"], ["SIGTERM", "SIGTERM"]], ids=["sigint", "twice"])
async def test_sigint_or_a_second_sigterm_does_not_wait_for_the_window(
    signals: list[str],
) -> None:
    """Ctrl-C closes everyone at once, as before; a second SIGTERM ends a drain
    at once. Either way a 600 s window does not hold the exit."""
    closes: list[tuple[float, int | None]] = []
    with trio.fail_after(TIMEOUT):
        async with run_cli(
            "serve", "--port", "0", "--log-level", "warning", "--drain-window", "600"
        ) as serve:
            port, clients = await serve_with_clients(serve, 3)
            async with trio.open_nursery() as nursery:
                for client in clients:
                    nursery.start_soon(await_close, client, closes)
                serve.process.send_signal(getattr(signal, signals[0]))
                if len(signals) > 1:
                    await until_not_ready(port)  # the drain has begun
                    serve.process.send_signal(getattr(signal, signals[1]))
            assert await serve.process.wait() == 0
    # Ctrl-C: each told with 1001 at once. The second signal drops them, with no
    # close frame (the first close of the drain was 200 s away).
    expected = 1001 if signals == ["SIGINT"] else None
    assert [code for _, code in closes] == [expected] * 3


async def test_with_redis_the_clients_are_served_until_their_turn(redis: RedisServer) -> None:
    """The backplane stops after the clients (finding R13), and during a drain it
    is fully up: what another process publishes reaches each client here until
    its 1001."""
    require_redis()
    with trio.fail_after(TIMEOUT):
        async with (
            serve(redis.url, "--log-level", "warning") as (a, base_a),
            serve(redis.url, "--log-level", "warning") as (_, base_b),
            connect(f"{base_a}/q", subprotocols=V1, proxy=None) as first,  # type: ignore[list-item]
            connect(f"{base_a}/q", subprotocols=V1, proxy=None) as second,  # type: ignore[list-item]
            connect(f"{base_b}/q", subprotocols=V1, proxy=None) as far,  # type: ignore[list-item]
        ):
            for ws in (first, second, far):
                await until_frame(ws, "joined")
            a.process.send_signal(signal.SIGTERM)
            await until_not_ready(int(base_a.rsplit(":", 1)[1]))  # the first close: 2.5 s on
            await far.send("during the drain")
            for ws in (first, second):
                seen = []
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        seen += [frame["text"] for frame in await frames(ws, 1)]
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
                assert seen == ["during the drain"]
            assert await a.process.wait() == 0


async def test_drain_closes_the_kth_of_n_at_k_nths_of_the_window(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The library's drain(): exactly window * k / N for the k-th close, /readyz
    and a new upgrade refused meanwhile, and run() returns when it is done."""
    count, window = 4, 8.0
    server = BroadcastServer(ServerOptions(drain_window=window))
    closes: list[tuple[float, int | None]] = []
    stopped = trio.Event()
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:

            async def run(task_status: trio.TaskStatus[None]) -> None:
                await server.run("127.0.0.1", 0, task_status=task_status)
                stopped.set()

            await nursery.start(run)
            clients = []
            for _ in range(count):
                client_side, server_side = trio.testing.memory_stream_pair()
                nursery.start_soon(server.handle_stream, server_side)
                clients.append(await RawClient.over(client_side))
            for client in clients:
                nursery.start_soon(await_close, client, closes)
            start = trio.current_time()
            server.drain()
            probe, probe_server = trio.testing.memory_stream_pair()
            nursery.start_soon(server.handle_stream, probe_server)
            await probe.send_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            probe_answer = await read_all(probe)
            late, late_server = trio.testing.memory_stream_pair()
            nursery.start_soon(server.handle_stream, late_server)
            await late.send_all(upgrade_request())
            late_answer = await read_all(late)
            await stopped.wait()
            finished = trio.current_time() - start
    assert [(at - start, code) for at, code in closes] == [
        (pytest.approx(window * k / count, abs=1e-6), 1001) for k in range(1, count + 1)
    ]
    assert finished == pytest.approx(window, abs=1e-6)  # each answered its close at once
    assert probe_answer.startswith(b"HTTP/1.1 503 ")
    assert json.loads(probe_answer.partition(b"\r\n\r\n")[2])["status"] == "draining"
    assert late_answer.startswith(b"HTTP/1.1 503 ") and b"server draining" in late_answer


async def read_all(stream: trio.abc.Stream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data
