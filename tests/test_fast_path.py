"""The pre-encoded, sometimes synchronous write path is wire-exact.

Frames we write ourselves (encoded once, written by the send loop or straight
from publish() to an idle socket, sometimes only in part) must be exactly what
an independent client expects, and ping/pong and the close handshake must keep
working while broadcasts flow.
"""

from __future__ import annotations

import trio
from websockets.trio.client import connect

from trio_ws_demo import BroadcastServer

from .conftest import url_of
from .rigs import payloads
from .wsraw import RawClient

TIMEOUT = 30


async def test_websockets_reads_every_frame_exactly_while_pinging(server: BroadcastServer) -> None:
    sent = payloads()
    url = url_of(server)
    pongs: list[float] = []

    async def receiver(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # Pings from this client, interleaved with the stream, must be answered.
        # max_queue=None: websockets stops reading once 16 messages wait unread,
        # so a pong behind them would never be read while we wait for it.
        async with connect(url, proxy=None, compression=None, max_size=None, max_queue=None) as ws:
            task_status.started()
            for n, expected in enumerate(sent):
                assert await ws.recv() == expected
                if n % 10 == 0:
                    pong = await ws.ping()  # a trio.Event, set when the pong arrives
                    await pong.wait()
                    pongs.append(trio.current_time())
        assert ws.close_code == 1000

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                await nursery.start(receiver)
            async with connect(url, proxy=None, compression=None, max_size=None) as publisher:
                for message in sent:
                    await publisher.send(message)
                for expected in sent:  # the publisher gets everything too
                    assert await publisher.recv() == expected
    assert len(pongs) == 3 * len(range(0, len(sent), 10))


async def test_a_slow_reader_gets_whole_frames_after_partial_writes(
    server: BroadcastServer,
) -> None:
    """A tiny receive window forces partial synchronous writes; frames stay whole."""
    big = [bytes([n]) * 100_000 for n in range(10)]
    with trio.fail_after(TIMEOUT):
        slow = await RawClient.connect(server.port, receive_buffer=16384)
        async with connect(url_of(server), proxy=None, max_size=None) as publisher:
            for message in big:
                await publisher.send(message)
            got: list[bytes] = []
            total = sum(len(m) for m in big)
            while sum(len(g) for g in got) < total:
                event = await slow.next_event()
                data = getattr(event, "data", None)
                if isinstance(data, (bytes, bytearray)):
                    got.append(bytes(data))  # fragments of whole frames, in order
            # Ping and close still work after the partial writes.
            await slow.stream.send_all(slow.close_frame())
            events = await slow.events_until_close()
            await slow.stream.aclose()
    joined = b"".join(got)
    assert joined == b"".join(big)
    assert events[-1].code == 1000  # type: ignore[attr-defined]
