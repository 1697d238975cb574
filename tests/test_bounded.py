"""Issue 25: what a peer can make the server hold is bounded, and its end has one owner.

Each test drives a real server over a real socket, as a hostile or merely fast
peer would. The bounds state their cost: time under ``fail_after``, memory as
the server process's RSS read from ``/proc/<pid>/status``.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest
import trio
from websockets.trio.client import connect
from wsproto.events import Pong

from trio_ws_demo import BroadcastServer, ServerOptions

from .conftest import StartServer, url_of
from .processes import listening_port, run_cli
from .wsraw import RawClient, client_frame, http_exchange, upgrade_request

TIMEOUT = 20

_PING = 0x9
_TEXT = 0x1
_CONTINUATION = 0x0
_CLOSE = 0x8


class Ended(logging.Handler):
    """Sets an event each time the server logs that a connection closed."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self._event = trio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "event", None) == "closed":
            self.count += 1
            self._event.set()
            self._event = trio.Event()

    async def wait(self, count: int = 1) -> None:
        while self.count < count:
            await self._event.wait()


@pytest.fixture
def ended() -> Iterator[Ended]:
    handler = Ended()
    logger = logging.getLogger("trio_ws_demo.server")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of every whole frame in what a server wrote (unmasked)."""
    frames = []
    at = 0
    while at + 2 <= len(data):
        short = data[at + 1] & 0x7F
        start = at + 2 + (2 if short == 126 else 8 if short == 127 else 0)
        length = short if short < 126 else int.from_bytes(data[at + 2 : start], "big")
        if start + length > len(data):
            break
        frames.append((data[at] & 0x0F, data[start : start + length]))
        at = start + length
    return frames


async def stuck_client(server: BroadcastServer) -> RawClient:
    """A client that reads nothing, with the server's writer stuck on its full socket."""
    client = await RawClient.connect(server.port or 0, receive_buffer=4096)
    # 3 MiB queued (under the 8 MiB budget): more than both kernel buffers hold.
    for _ in range(48):
        server.broadcast("x" * 65536)
    return client


# -- one owner of a connection's end (R2, R3) ---------------------------------


@pytest.mark.parametrize("how", ["close frame", "bad UTF-8", "half-close"])
async def test_a_stuck_writer_ends_within_close_timeout_whatever_stops_the_reader(
    start_server: StartServer, ended: Ended, how: str
) -> None:
    """R2: the peer stops the reader while our writer is stuck on its full socket.
    The connection must end (slot, fd and queue freed) within --close-timeout,
    though the peer never reads and never closes its socket."""
    server = await start_server(ServerOptions(close_timeout=1.0))
    client = await stuck_client(server)
    assert server.clients == 1
    stream = client.stream
    if how == "close frame":
        await stream.send_all(client_frame(_CLOSE, (1000).to_bytes(2, "big")))
    elif how == "bad UTF-8":
        await stream.send_all(client_frame(_TEXT, b"\xff\xfe"))
    else:
        stream.socket.shutdown(socket.SHUT_WR)
    with trio.fail_after(1.0 + 4):  # close_timeout, and scheduling slack
        await ended.wait()
    assert server.clients == 0
    await stream.aclose()


async def test_bad_input_while_our_close_waits_makes_no_second_close_frame(
    start_server: StartServer, ended: Ended
) -> None:
    """R3: our close (here: 1008 for the rate) waits behind a stuck write; the peer
    then sends bad UTF-8. Exactly one close frame reaches the peer: ours."""
    options = ServerOptions(
        close_timeout=1.0, max_message_rate=1, message_burst=1, rate_limit_action="close"
    )
    server = await start_server(options)
    client = await stuck_client(server)
    over_the_rate = client.frame("one") + client.frame("two")
    await client.stream.send_all(over_the_rate + client_frame(_TEXT, b"\xff\xfe"))
    received = b""
    with trio.fail_after(TIMEOUT):
        while chunk := await client.stream.receive_some(1 << 20):
            received += chunk
        await ended.wait()
    closes = [payload for opcode, payload in server_frames(received) if opcode == _CLOSE]
    assert [int.from_bytes(c[:2], "big") for c in closes] == [1008]
    await client.stream.aclose()


# -- control frames and fragments have a budget (R1, T8) ----------------------


async def test_megabytes_of_pings_never_read_hold_no_memory() -> None:
    """R1: 4 MB of empty pings (700,000) from a peer that reads nothing. Before,
    every pong waited in a list: RSS grew by 70 MB. Now at most one pong waits. (The rate limit
    is off here so that every ping is parsed: this bounds the pongs alone.)"""
    with trio.fail_after(60):
        async with run_cli("serve", "--port", "0", "--max-message-rate", "0") as serve:
            port = await listening_port(serve)
            before = rss_kib(serve.process.pid)
            client = await RawClient.connect(port, receive_buffer=4096)
            ping = client_frame(_PING, b"")
            batch = ping * (1 << 16)
            for _ in range(4 * 1024 * 1024 // len(batch) + 1):
                await client.stream.send_all(batch)
            # The server reads in order: once a second client's round trip is done
            # the pings have been read (the kernel buffers hold a few hundred KiB).
            async with connect(f"ws://127.0.0.1:{port}/other", proxy=None) as probe:
                await probe.send("done")
                assert await probe.recv() == "done"
            grown = rss_kib(serve.process.pid) - before
            print(f"4 MB of pings never read: server RSS grew {grown} KiB")  # pytest -s
            assert grown < 20 * 1024, f"RSS grew {grown} KiB"
            await client.stream.aclose()


def one_message_in_200_fragments() -> bytes:
    frames = [client_frame(_TEXT, b"a", fin=False)]
    frames += [client_frame(_CONTINUATION, b"a", fin=False) for _ in range(198)]
    frames.append(client_frame(_CONTINUATION, b"a"))
    return b"".join(frames)


@pytest.mark.parametrize(
    "flood",
    [client_frame(_PING, b"") * 100, one_message_in_200_fragments()],
    ids=["100 pings", "one message in 200 fragments"],
)
async def test_pings_and_fragments_count_toward_the_message_rate(
    start_server: StartServer, flood: bytes
) -> None:
    """T8: pings were free, and a message cost one unit of the rate however many
    fragments it had; now every frame is one unit (here: close at 10/s)."""
    server = await start_server(
        ServerOptions(max_message_rate=10, rate_limit_action="close", close_timeout=1.0)
    )
    client = await RawClient.connect(server.port or 0)
    await client.stream.send_all(flood)
    with trio.fail_after(TIMEOUT):
        events = await client.events_until_close()
    await client.stream.aclose()
    close = events[-1]
    assert (close.code, close.reason) == (1008, "rate limit")  # type: ignore[attr-defined]


async def test_the_burst_follows_the_rate(start_server: StartServer) -> None:
    """At --max-message-rate 20, 1,000 messages no longer get through at once: the
    burst defaults to one second's worth of the rate."""
    server = await start_server(
        ServerOptions(max_message_rate=20, rate_limit_action="close", close_timeout=1.0)
    )
    client = await RawClient.connect(server.port or 0)
    await client.stream.send_all(b"".join(client.frame(f"m{i}") for i in range(100)))
    with trio.fail_after(TIMEOUT):
        events = await client.events_until_close()
    await client.stream.aclose()
    echoed = [e for e in events if hasattr(e, "data")]
    assert len(echoed) == 20
    close = events[-1]
    assert (close.code, close.reason) == (1008, "rate limit")  # type: ignore[attr-defined]


# -- defaults that never hurt an honest client --------------------------------


async def test_a_fast_publisher_at_the_defaults_loses_nothing(server: BroadcastServer) -> None:
    """5,000 x 1 KiB as fast as the client can write, at the default rate: before,
    closed 1008 after about 4,157. Now the server reads less, TCP slows the
    sender, and all 5,000 arrive with the connection still open."""
    count = 5000
    with trio.fail_after(60):  # 5,000 at 1,000/s, after a 1,000 burst: about 4 s
        async with (
            connect(url_of(server, "/fast"), proxy=None) as listener,
            connect(url_of(server, "/fast"), proxy=None) as publisher,
        ):
            async with trio.open_nursery() as nursery:

                async def publish() -> None:
                    body = "x" * 1000
                    for i in range(count):
                        await publisher.send(f"{i:05d}{body}")

                async def read_own_echoes() -> None:  # a polite client reads
                    for _ in range(count):
                        await publisher.recv()

                nursery.start_soon(publish)
                nursery.start_soon(read_own_echoes)
                for i in range(count):
                    message = await listener.recv()
                    assert message[:5] == f"{i:05d}"
            await publisher.send("still open")
            assert await listener.recv() == "still open"
            assert await publisher.recv() == "still open"


# -- the process's memory budget ----------------------------------------------


async def test_a_hundred_partial_messages_stay_inside_max_memory() -> None:
    """A hundred clients each hold a 900 KiB partial message (90 MiB in all) against
    --max-memory 32 MiB. Those that do not fit are closed with 1013; the server's
    RSS grows by about the budget, not by 90 MiB; the budget comes back when
    they are gone."""
    mib = 1024 * 1024
    with trio.fail_after(90):
        async with run_cli("serve", "--port", "0", "--max-memory", str(32 * mib)) as serve:
            port = await listening_port(serve)
            before = rss_kib(serve.process.pid)
            part = client_frame(_TEXT, b"a" * (900 * 1024), fin=False)
            clients = []
            for _ in range(100):
                client = await RawClient.connect(port)
                await client.stream.send_all(part)
                clients.append(client)
            # Each message's frame is read whole by now or is being read: a client
            # that did not fit has its 1013 on the way.
            closed = 0
            async with trio.open_nursery() as nursery:

                async def close_code(client: RawClient) -> None:
                    nonlocal closed
                    with trio.move_on_after(3):
                        events = await client.events_until_close()
                        if events and getattr(events[-1], "code", None) == 1013:
                            closed += 1

                for client in clients:
                    nursery.start_soon(close_code, client)
            grown = rss_kib(serve.process.pid) - before
            print(f"100 partial messages: {closed} closed 1013, RSS grew {grown} KiB")
            assert closed >= 60, closed  # 32 MiB holds at most 36 of them
            assert grown < 80 * 1024, f"RSS grew {grown} KiB"
            for client in clients:
                await client.stream.aclose()
            async with connect(f"ws://127.0.0.1:{port}/", proxy=None) as probe:
                await probe.send("fits again")
                assert await probe.recv() == "fits again"


async def test_three_thousand_lines_piped_into_echo_all_come_back(server: BroadcastServer) -> None:
    """``seq 1 3000 | echo URL -`` exited 1 after 1,373 lines at the default rate
    limit; now every line is sent, echoed and printed, and it exits 0."""
    lines = "".join(f"{i}\n" for i in range(1, 3001)).encode()
    with trio.fail_after(60):
        async with run_cli("echo", url_of(server), "-", stdin=lines) as echo:
            printed = await echo.rest()
            assert await echo.process.wait() == 0
    assert printed.count("Server sent:  3000") == 1
    assert sum(line.startswith("Server sent:") for line in printed) == 3000


async def test_past_max_memory_a_join_and_a_post_get_503(
    start_server: StartServer, ended: Ended
) -> None:
    """One client's partial message fills --max-memory: a new WebSocket and a POST
    are refused with 503 until it is gone, then both work again."""
    server = await start_server(ServerOptions(max_memory=100_000))
    port = server.port or 0
    holder = await RawClient.connect(port)
    partial = client_frame(_TEXT, b"a" * 100_000, fin=False)
    await holder.stream.send_all(partial + client_frame(_PING, b"read?"))
    post = b"POST /r HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
    with trio.fail_after(TIMEOUT):
        assert isinstance(await holder.next_event(), Pong)  # the partial is held now
        for request in (upgrade_request(), post):
            answer = await http_exchange(port, request)
            assert answer.startswith(b"HTTP/1.1 503 "), answer
            assert b"server overloaded" in answer
        await holder.stream.aclose()
        await ended.wait()
        assert (await http_exchange(port, post)).startswith(b"HTTP/1.1 200 ")
    assert server.statistics().memory_used == 0
    assert server.statistics().rejections["server overloaded"] == 1  # the upgrade
