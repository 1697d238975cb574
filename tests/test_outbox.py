"""The Outbox on its own, over a real socket pair: the rules that keep frames whole."""

from __future__ import annotations

import socket

import trio
import trio.testing

from trio_ws_demo.frames import PING_FRAME, encode_close, encode_frame
from trio_ws_demo.hub import InboxBudget
from trio_ws_demo.server.outbox import Outbox
from trio_ws_demo.server.transport import Transport
from trio_ws_demo.stats import Traffic

from .rigs import outbox_pair

TIMEOUT = 10


async def read_all(peer: socket.socket) -> bytes:
    peer.setblocking(False)
    data = b""
    async with trio.SocketStream(trio.socket.from_stdlib_socket(peer)) as stream:
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data


async def test_a_started_frame_is_finished_before_a_pong_a_ping_or_more_data() -> None:
    big = encode_frame(b"x" * 500_000)
    small = encode_frame("after")
    pong = b"\x8a\x00"
    received: list[bytes] = []
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            outbox, peer = outbox_pair(nursery)
            assert outbox.offer(big, len(big))  # partly written, the rest is in hand
            assert outbox.queued_messages == 1
            async with trio.open_nursery() as writers:
                writers.start_soon(outbox.send_control, pong)  # as trio-websocket would
                await trio.testing.wait_all_tasks_blocked()
                outbox.send_control_nowait(PING_FRAME)  # as the keepalive would
                assert outbox.offer(small, len(small))
                nursery.start_soon(_collect, peer, received)
            assert await outbox.send_close(encode_close(1000), flush=True, timeout=5)
            await outbox.aclose()
    # Control frames jump the queue, but never into the middle of a frame.
    assert received == [big + pong + PING_FRAME + small + encode_close(1000)]
    assert outbox.delivered == 2


async def _collect(peer: socket.socket, into: list[bytes]) -> None:
    into.append(await read_all(peer))


async def test_no_close_frame_after_half_a_frame_that_cannot_be_finished(
    autojump_clock: trio.testing.MockClock,
) -> None:
    big = encode_frame(b"y" * 2_000_000)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            outbox, peer = outbox_pair(nursery)
            assert outbox.offer(big, len(big))
            # The peer does not read: the frame cannot be finished in time.
            sent = await outbox.send_close(encode_close(1008), flush=False, timeout=5)
            assert not sent
            await outbox.aclose()
            received = await read_all(peer)
    assert len(received) < len(big)
    assert encode_close(1008) not in received[-8:]
    assert outbox.close_code_sent is None


async def test_without_flush_the_queue_is_dropped_but_the_frame_under_way_finishes() -> None:
    big = encode_frame(b"z" * 500_000)
    queued = [encode_frame(f"queued {n}") for n in range(10)]
    received: list[bytes] = []
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            outbox, peer = outbox_pair(nursery)
            assert outbox.offer(big, len(big))
            for frame in queued:
                assert outbox.offer(frame, len(frame))
            nursery.start_soon(_collect, peer, received)
            assert await outbox.send_close(encode_close(1008), flush=False, timeout=5)
            await outbox.aclose()
    assert received == [big + encode_close(1008)]
    assert outbox.queued_messages == 0 and outbox.queued_bytes == 0


async def test_the_budget_counts_what_is_in_hand() -> None:
    budget = InboxBudget(max_messages=3, max_bytes=10**9)
    big = encode_frame(b"w" * 500_000)
    async with trio.open_nursery() as nursery:
        outbox, peer = outbox_pair(nursery, budget)
        assert outbox.offer(big, len(big))  # half written: still counts
        assert outbox.offer(big, len(big))
        assert outbox.offer(big, len(big))
        assert not outbox.offer(big, len(big))  # the hub would now apply its policy
        await outbox.aclose()
        peer.close()


async def test_frames_queued_during_the_handshake_follow_the_response() -> None:
    """A connection subscribes before its 101 goes out: frames wait for opened()."""
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    response = b"HTTP/1.1 101 Switching Protocols\r\n\r\n"
    early = encode_frame("published during the handshake")
    received: list[bytes] = []
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
            outbox = Outbox(Transport(stream, ours), nursery, InboxBudget(), Traffic())
            assert outbox.offer(early, len(early))
            await trio.testing.wait_all_tasks_blocked()
            await outbox.send_control(response)
            outbox.opened()
            nursery.start_soon(_collect, peer, received)
            assert await outbox.send_close(encode_close(1000), flush=True, timeout=5)
            await outbox.aclose()
    assert received == [response + early + encode_close(1000)]
