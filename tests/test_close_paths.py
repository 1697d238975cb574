"""Regressions from the design review of 2026-12-01 (B4, B6, B8, B11, B12).

Each failed on the server as it was then (trio-websocket as its engine); the
review's notes name the causes. B1, B2 and B10 are in ``test_hostile.py``.
"""

from __future__ import annotations

import logging
import socket

import pytest
import trio
import trio.testing
import trustme
from websockets.exceptions import ConnectionClosed
from websockets.trio.client import connect

from trio_ws_demo import BroadcastServer, ServerOptions
from trio_ws_demo.frames import encode_close, encode_frame
from trio_ws_demo.hub import InboxBudget
from trio_ws_demo.server.outbox import MAX_WIRE_BACKLOG, Outbox
from trio_ws_demo.server.transport import Transport
from trio_ws_demo.stats import Traffic

from .rigs import outbox_pair, taken_over

TIMEOUT = 20


async def test_b4_a_ping_while_our_close_waits_behind_a_flush_is_no_error(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """A websockets client pings while the server's 1001 waits behind 20 MB
    it has not read yet: no pong (the close is under way), no ERROR, and a
    clean close once it reads."""
    caplog.set_level(logging.INFO)
    big = InboxBudget(max_messages=10_000, max_bytes=64 * 1024 * 1024)
    server = BroadcastServer(ServerOptions(budget=big, shutdown_timeout=15))
    serving = trio.CancelScope()

    async def run(task_status: trio.TaskStatus[int]) -> None:
        with serving:
            await server.run("127.0.0.1", 0, task_status=task_status)

    port = await nursery.start(run)
    with trio.fail_after(TIMEOUT):
        async with connect(f"ws://127.0.0.1:{port}/", proxy=None, max_queue=1) as ws:
            for n in range(300):
                server.broadcast(bytes([n % 256]) * 65536)  # 19.7 MB it does not read yet
            serving.cancel()  # shutdown: 1001 after the flush
            await trio.testing.wait_all_tasks_blocked()
            await ws.ping()  # arrives while the close waits
            received = 0
            with pytest.raises(ConnectionClosed):
                while True:
                    await ws.recv()
                    received += 1
        assert received == 300
        assert ws.close_code == 1001
    assert server.connection_errors == 0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_b6_history_handed_to_a_joiner_is_not_counted_as_its_backlog(
    nursery: trio.Nursery,
) -> None:
    """20 history frames for a joiner with a live budget of 10 messages: the
    next live message is taken, not a reason to close the joiner as slow."""
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
    outbox = Outbox(Transport(stream, ours), nursery, InboxBudget(max_messages=10), Traffic())
    history = [encode_frame(f"old {n}") for n in range(20)]
    outbox.preload(history)
    live = encode_frame("live")
    assert outbox.offer(live, len(live))
    for n in range(9):  # the live budget is all there for live messages
        more = encode_frame(f"live {n}")
        assert outbox.offer(more, len(more))
    over = encode_frame("one too many")
    assert not outbox.offer(over, len(over))  # ... and no more than that
    await outbox.aclose()
    peer.close()


async def test_b8_records_made_while_reading_are_bounded(
    ca: trustme.CA, nursery: trio.Nursery
) -> None:
    """A peer that reads nothing but makes us answer (alerts, key updates):
    the records waiting behind a stuck write are bounded, then it is let go."""

    class Owner:
        told = 0

        def slow_consumer(self) -> None:
            self.told += 1

    with trio.fail_after(TIMEOUT):
        async with taken_over(ca, nursery, send_buffer=16384) as (_, outbox, _client):
            owner = Owner()
            outbox._owner = owner  # the connection, in the server
            frame = encode_frame(b"x" * 1_000_000)
            assert outbox.offer(frame, len(frame))  # stuck: the client reads nothing
            record = b"\x15\x03\x03\x00\x1a" + bytes(26)  # an alert's size
            for _ in range(2 * MAX_WIRE_BACKLOG // len(record)):
                outbox.send_wire_nowait(record)
            assert not outbox.writable
            assert owner.told == 1


async def test_b11_after_the_flush_times_out_the_close_frame_still_follows(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The queue is dropped at close_timeout; the frame under way is finished,
    and the close frame follows it, as the README says."""
    frames = [encode_frame(bytes([n]) * 100_000) for n in range(10)]
    received = b""

    async def read_late(peer: socket.socket) -> None:
        nonlocal received
        await trio.sleep(7)  # virtual: past the 5 s flush
        peer.setblocking(False)
        async with trio.SocketStream(trio.socket.from_stdlib_socket(peer)) as stream:
            while chunk := await stream.receive_some(65536):
                received += chunk

    async with trio.open_nursery() as nursery:
        outbox, peer = outbox_pair(nursery)
        for frame in frames:
            assert outbox.offer(frame, len(frame))
        nursery.start_soon(read_late, peer)
        start = trio.current_time()
        assert await outbox.send_close(encode_close(1001), flush=True, timeout=5)
        assert trio.current_time() - start == pytest.approx(7)
        await outbox.aclose()
    assert received == frames[0] + encode_close(1001)


async def test_b12_close_notify_follows_a_clean_close(
    ca: trustme.CA, nursery: trio.Nursery
) -> None:
    with trio.fail_after(TIMEOUT):
        async with taken_over(ca, nursery) as (_, outbox, client):
            close = encode_close(1000)
            assert await outbox.send_close(close, flush=True, timeout=5)
            await outbox.aclose()
            received = b""
            # Without close_notify this read would raise (a truncation, for TLS).
            while chunk := await client.receive_some():
                received += chunk
    assert received == close
