"""Every limit flag, passed to a real ``serve`` process and crossed from outside.

One row per flag of the README's limits table: the flag goes to
``python -m trio_ws_demo serve`` on the command line (so the wiring in
``cli/serve.py`` is what is tested, not ``ServerOptions``), and the check
crosses the limit over a real socket and looks for the documented answer.
A flag mapped to the wrong option, or dropped, fails its row: each check
would pass at the flag's value and fail at the default.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trio

from .processes import Process, run_cli
from .wsraw import RawClient, client_frame, http_exchange, upgrade_request

TIMEOUT = 15


@asynccontextmanager
async def serve(*flags: str) -> AsyncIterator[tuple[Process, int]]:
    async with run_cli("serve", "--port", "0", "--log-level", "warning", *flags) as process:
        line = await process.readline()
        assert line.startswith("Listening on ws://127.0.0.1:"), line
        yield process, int(line.split()[2].rsplit(":", 1)[1])


def head(target: str = "/", extra: str = "") -> bytes:
    return (
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


async def status_of(port: int, request: bytes) -> int:
    answer = await http_exchange(port, request)
    return int(answer.split(b" ", 2)[1])


async def close_code_after(port: int, data: bytes) -> int:
    """Send *data* on a fresh WebSocket; the code of the close frame that ends the answer."""
    client = await RawClient.connect(port)
    await client.stream.send_all(data)
    answer = b""
    while chunk := await client.stream.receive_some(65536):
        answer += chunk
    await client.stream.aclose()
    at = answer.rfind(b"\x88")  # the close frame is the last thing sent
    return int.from_bytes(answer[at + 2 : at + 4], "big")


async def stuck_then_flood(port: int, messages: int, size: int) -> bytes:
    """A client that never reads while another publishes *messages*; then the stuck
    one reads: all it got, up to its close, or (if it was kept) up to a message
    published after it began to read again."""
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect(("127.0.0.1", port))
    stuck = trio.SocketStream(sock)
    await stuck.send_all(head())
    assert (await stuck.receive_some(1024)).startswith(b"HTTP/1.1 101 ")
    publisher = await RawClient.connect(port)
    message = b"m" * size
    for _ in range(messages):
        await publisher.send(message)
        await publisher.next_message()  # the publisher keeps up: it is not the stuck one
    received = b""
    n = 0
    while not received.endswith(b"\x03\xf0slow consumer") and b"again" not in received:
        await publisher.send(f"again {n}".encode())
        await publisher.next_message()
        n += 1
        chunk = b"(nothing yet)"
        with trio.move_on_after(0.2):  # read what came meanwhile, then publish once more
            while chunk := await stuck.receive_some(65536):
                received += chunk
        if not chunk:  # the end: closed
            break
    await stuck.aclose()
    await publisher.stream.aclose()
    return received


# -- one check per flag --------------------------------------------------------


async def message_size(port: int) -> None:
    assert await close_code_after(port, client_frame(0x2, b"x" * 101)) == 1009
    fine = await RawClient.connect(port)
    await fine.send(b"y" * 100)
    assert await fine.next_message() == b"y" * 100
    await fine.stream.aclose()


async def queue_messages(port: int) -> None:
    received = await stuck_then_flood(port, 3000, 100)
    assert received.endswith(b"\x03\xf0slow consumer")  # close 1008, then the end


async def queue_bytes(port: int) -> None:
    received = await stuck_then_flood(port, 300, 2000)
    assert received.endswith(b"\x03\xf0slow consumer")


async def slow_client_drop(port: int) -> None:
    received = await stuck_then_flood(port, 3000, 100)
    assert b"slow consumer" not in received  # not closed: still connected
    assert b"again" in received  # and it gets messages again once it reads
    metrics = await http_exchange(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    dropped = next(
        line
        for line in metrics.decode().splitlines()
        if line.startswith("trio_ws_demo_messages_dropped_total")
    )
    assert float(dropped.split()[1]) > 0


async def max_clients(port: int) -> None:
    first = await RawClient.connect(port)
    assert await status_of(port, head()) == 503
    await first.stream.aclose()


async def max_rooms(port: int) -> None:
    first = await RawClient.connect(port)  # room "" is one
    second = await trio.open_tcp_stream("127.0.0.1", port)
    await second.send_all(head("/b"))
    assert (await second.receive_some()).startswith(b"HTTP/1.1 101 ")
    assert await status_of(port, head("/c")) == 503
    await second.aclose()
    await first.stream.aclose()


async def max_room_name(port: int) -> None:
    assert await status_of(port, head("/abcdef")) == 400
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(head("/abcde"))
    assert (await stream.receive_some()).startswith(b"HTTP/1.1 101 ")
    await stream.aclose()


async def history_and_bytes(port: int, kept: int) -> None:
    sender = await RawClient.connect(port)
    for n in range(10):
        await sender.send(f"{n}" + "x" * 99)
        await sender.next_message()
    late = await RawClient.connect(port)
    await late.send("probe")
    got = []
    while (message := await late.next_message()) != "probe":
        got.append(message)
    assert got == [f"{n}" + "x" * 99 for n in range(10 - kept, 10)]
    await late.stream.aclose()
    await sender.stream.aclose()


async def max_header_size(port: int) -> None:
    assert await status_of(port, head(extra="X-Pad: " + "p" * 400 + "\r\n")) == 431
    assert await status_of(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") == 200


async def handshake_timeout(port: int) -> None:
    silent = await trio.open_tcp_stream("127.0.0.1", port)
    with trio.fail_after(3):  # 0.5 s by the flag; the default (10 s) would fail here
        assert await silent.receive_some() == b""
    await silent.aclose()


async def ping(port: int) -> None:
    client = await RawClient.connect(port)
    with trio.fail_after(3):  # pinged after 0.3 s, let go 0.3 s later; defaults: 40 s
        data = b""
        while chunk := await client.stream.receive_some(65536):
            data += chunk
    assert data.startswith(b"\x89\x00")  # the ping, then no close frame: just the end
    assert b"\x88" not in data
    await client.stream.aclose()


async def allow_origin(port: int) -> None:
    assert await status_of(port, head(extra="Origin: http://evil.example\r\n")) == 403
    good = await trio.open_tcp_stream("127.0.0.1", port)
    await good.send_all(head(extra="Origin: http://good.example\r\n"))
    assert (await good.receive_some()).startswith(b"HTTP/1.1 101 ")
    await good.aclose()


async def echo_mode(port: int) -> None:
    a = await RawClient.connect(port)
    b = await RawClient.connect(port)
    await a.send("for a only")
    assert await a.next_message() == "for a only"
    await b.send("for b only")
    assert await b.next_message() == "for b only"  # not a's message first
    for client in (a, b):
        await client.stream.aclose()


async def max_pending(port: int) -> None:
    rooms = json.loads(
        (await http_exchange(port, b"GET /rooms HTTP/1.1\r\nHost: x\r\n\r\n")).split(b"\r\n\r\n")[1]
    )
    assert rooms["total"] == 0
    stalled = []
    for _ in range(2):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(upgrade_request()[:30])
        stalled.append(stream)
    waiting = await trio.open_tcp_stream("127.0.0.1", port)
    await waiting.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    with trio.move_on_after(0.3) as unanswered:  # both slots taken: it waits in the backlog
        await waiting.receive_some()
    assert unanswered.cancelled_caught
    await stalled[0].aclose()  # a slot frees: the waiting one is served
    answer = b""
    while chunk := await waiting.receive_some():
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ")
    for stream in [*stalled[1:], waiting]:
        await stream.aclose()


ROWS: list[tuple[list[str], Callable[[int], Awaitable[None]]]] = [
    (["--max-message-size", "100"], message_size),
    (["--max-queue", "5", "--max-message-rate", "0"], queue_messages),
    (["--max-queue-bytes", "10000"], queue_bytes),
    (["--slow-client", "drop", "--max-queue", "5", "--max-message-rate", "0"], slow_client_drop),
    (["--max-clients", "1"], max_clients),
    (["--max-rooms", "2"], max_rooms),
    (["--max-room-name", "5"], max_room_name),
    (["--history", "3"], lambda port: history_and_bytes(port, 3)),
    (["--history", "100", "--history-bytes", "700"], lambda port: history_and_bytes(port, 2)),
    (["--max-header-size", "300"], max_header_size),
    (["--handshake-timeout", "0.5"], handshake_timeout),
    (["--ping-interval", "0.3", "--ping-timeout", "0.3"], ping),
    (["--allow-origin", "http://good.example"], allow_origin),
    (["--echo"], echo_mode),
    (["--max-pending", "2"], max_pending),
]


@pytest.mark.parametrize(("flags", "check"), ROWS, ids=[" ".join(flags) for flags, _ in ROWS])
async def test_a_limit_flag_reaches_the_server_and_is_crossed(
    flags: list[str], check: Callable[[int], Awaitable[None]]
) -> None:
    with trio.fail_after(TIMEOUT):
        async with serve(*flags) as (process, port):
            await check(port)
            assert process.process.poll() is None  # and the server is still up
