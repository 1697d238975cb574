"""FrameWire on its own, over a real socket pair: the rules that keep frames whole."""

from __future__ import annotations

import socket

import trio
import trio.testing

from trio_ws_demo.frames import encode_close, encode_frame
from trio_ws_demo.wire import FrameWire

TIMEOUT = 10


def wire_pair() -> tuple[FrameWire, socket.socket]:
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    ours.setblocking(False)
    wire = FrameWire(trio.SocketStream(trio.socket.from_stdlib_socket(ours)), raw_socket=ours)
    return wire, peer


async def read_all(peer: socket.socket) -> bytes:
    peer.setblocking(False)
    trio_peer = trio.SocketStream(trio.socket.from_stdlib_socket(peer))
    data = b""
    async with trio_peer:
        while chunk := await trio_peer.receive_some(65536):
            data += chunk
    return data


async def test_a_partial_synchronous_write_is_finished_before_anything_else() -> None:
    wire, peer = wire_pair()
    big = encode_frame(b"x" * 500_000)
    small = encode_frame("after")
    pong = b"\x8a\x00"
    received: list[bytes] = []

    async def reader() -> None:
        received.append(await read_all(peer))

    with trio.fail_after(TIMEOUT):
        rest = wire.try_write_now(big)
        assert rest is not None and 0 < len(rest) < len(big)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            async with trio.open_nursery() as writers:
                # Another write (say, a pong from trio-websocket) must wait for the rest.
                writers.start_soon(wire.send_all, pong)
                await trio.testing.wait_all_tasks_blocked()
                assert wire.try_write_now(small) == small  # refused while mid-frame
                writers.start_soon(wire.write_frames, [rest, small])
            await wire.finish(1)
    assert received == [big + small + pong]


async def test_no_deferred_close_frame_after_half_a_frame() -> None:
    wire, peer = wire_pair()
    big = encode_frame(b"y" * 500_000)
    with trio.fail_after(TIMEOUT):
        rest = wire.try_write_now(big)
        assert rest is not None
        wire.defer_close(encode_close(1000))
        received: list[bytes] = []

        async def reader() -> None:
            received.append(await read_all(peer))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)  # the peer reads, so a close frame could get through
            await trio.testing.wait_all_tasks_blocked()
            await wire.finish(1)  # the rest was never written: close, add nothing
    assert received == [big[: len(big) - len(rest)]]


async def test_a_deferred_close_goes_out_after_whole_frames() -> None:
    wire, peer = wire_pair()
    frame = encode_frame("bye")
    with trio.fail_after(TIMEOUT):
        assert wire.try_write_now(frame) is None
        await wire.send_all(encode_close(1000))  # a close we did not start: deferred
        assert await wire.write_frames([encode_frame("flushed")])
        await wire.finish(1)
        received = await read_all(peer)
    assert received == frame + encode_frame("flushed") + encode_close(1000)
