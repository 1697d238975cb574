"""Publish once, and know where (issue 28, item 3).

A ``POST`` retried with the same ``Idempotency-Key`` publishes nothing new and
answers the first publish's ``(epoch, offset)``; a v1 ``publish`` with an ``id``
is acked with where it landed, and the same ``id`` again is not delivered
twice. With ``--redis`` the check is made in the Redis function, atomic with
the write: it holds across processes, and across a retry to another process.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from websockets.exceptions import InvalidStatus
from websockets.trio.client import ClientConnection, connect

from trio_ws_demo import BroadcastServer, ServerOptions
from trio_ws_demo.idempotency import Landings

from .backplane_rigs import V1, frames, until_frame
from .conftest import StartServer, url_of
from .redis_server import RedisServer, require_redis
from .wsraw import post_once

TIMEOUT = 15


async def post(
    server: BroadcastServer, room: str, body: bytes, key: str | None = None
) -> tuple[int, dict[str, Any]]:
    headers = () if key is None else (f"Idempotency-Key: {key}",)
    return await post_once(server.port or 0, f"/{room}", body, "text/plain", *headers)


async def next_kind(ws: ClientConnection, *kinds: str) -> dict[str, Any]:
    """The next frame of one of *kinds* (the others skipped)."""
    while True:
        frame = json.loads(await ws.recv())
        if frame["type"] in kinds:
            return dict(frame)


async def test_a_post_retried_with_its_key_publishes_once(start_server: StartServer) -> None:
    server = await start_server(ServerOptions())
    with trio.fail_after(TIMEOUT):
        async with connect(url_of(server, "/r"), subprotocols=V1, proxy=None) as ws:  # type: ignore[list-item]
            await until_frame(ws, "joined")
            first = await post(server, "r", b"charge 10 EUR", key="order-17")
            again = await post(server, "r", b"charge 10 EUR", key="order-17")
            other = await post(server, "other", b"elsewhere", key="order-17")  # another room
            marker = await post(server, "r", b"marker")
            got = [f["text"] for f in await frames(ws, 2)]
    assert first[0] == again[0] == other[0] == marker[0] == 200
    assert (again[1]["epoch"], again[1]["offset"]) == (first[1]["epoch"], first[1]["offset"])
    assert got == ["charge 10 EUR", "marker"]  # once: the marker came next


async def test_a_bad_idempotency_key_is_400(start_server: StartServer) -> None:
    server = await start_server(ServerOptions())
    with trio.fail_after(TIMEOUT):
        status, answer = await post(server, "r", b"x", key="k" * 129)
    assert status == 400 and "Idempotency-Key" in json.dumps(answer)


async def test_a_v1_publish_is_acked_once_and_never_delivered_twice(
    start_server: StartServer,
) -> None:
    server = await start_server(ServerOptions())
    with trio.fail_after(TIMEOUT):
        async with (
            connect(url_of(server, "/r?name=ann"), subprotocols=V1, proxy=None) as ann,  # type: ignore[list-item]
            connect(url_of(server, "/r"), subprotocols=V1, proxy=None) as other,  # type: ignore[list-item]
        ):
            joined = await until_frame(ann, "joined")
            await until_frame(other, "joined")
            publish = {"type": "publish", "id": "m-1", "text": "hello"}
            await ann.send(json.dumps(publish))
            seen = await next_kind(ann, "message", "ack")
            ack = await next_kind(ann, "message", "ack")
            if seen["type"] == "ack":  # the ack and the message, in either order
                seen, ack = ack, seen
            await ann.send(json.dumps(publish))  # a retry: not delivered again
            again = await next_kind(ann, "message", "ack")
            await ann.send(json.dumps({"type": "publish", "id": 7, "base64": "AP8="}))
            await ann.send(json.dumps({"type": "publish", "text": "no id"}))
            error = await next_kind(ann, "error")
            got = [(f["from"], f.get("text"), f.get("base64")) for f in await frames(other, 2)]
    assert (ack["type"], seen["type"]) == ("ack", "message")
    assert (ack["id"], ack["epoch"], ack["offset"]) == ("m-1", joined["epoch"], seen["offset"])
    assert (again["type"], again["id"], again["offset"]) == ("ack", "m-1", ack["offset"])
    assert "id" in str(error["reason"])
    assert got == [("ann", "hello", None), ("ann", None, "AP8=")]


def test_landings_are_bounded_by_the_window_and_a_count() -> None:
    now = [0.0]
    landings = Landings(window=10.0, limit=3, clock=lambda: now[0])
    landings.put("r", "a", ("e", 1))
    assert landings.get("r", "a") == ("e", 1) and landings.get("s", "a") is None
    now[0] = 10.5
    assert landings.get("r", "a") is None and len(landings) == 0  # past the window
    for n in range(5):
        landings.put("r", str(n), ("e", n))
    assert len(landings) == 3 and landings.get("r", "0") is None  # the oldest went first


async def test_with_redis_a_retry_to_another_process_publishes_once(
    redis: RedisServer, start_server: StartServer
) -> None:
    """Atomic with the write in the Redis function: the retry that lands on the
    other process answers the same place, and every listener gets it once; a v1
    publish is acked with the offset every process delivers it at."""
    require_redis()
    a = await start_server(ServerOptions(redis=redis.url))
    b = await start_server(ServerOptions(redis=redis.url))
    with trio.fail_after(TIMEOUT):
        async with (
            connect(url_of(a, "/x"), subprotocols=V1, proxy=None) as near,  # type: ignore[list-item]
            connect(url_of(b, "/x?name=bo"), subprotocols=V1, proxy=None) as far,  # type: ignore[list-item]
        ):
            await until_frame(near, "joined")
            await until_frame(far, "joined")
            first = await post(a, "x", b"pay once", key="invoice-9")
            retry = await post(b, "x", b"pay once", key="invoice-9")
            publish = json.dumps({"type": "publish", "id": "p-1", "text": "from bo"})
            await far.send(publish)
            await far.send(publish)  # again, to the same process
            acks: list[dict[str, Any]] = []
            far_got: list[tuple[int, str]] = []
            while len(acks) < 2 or len(far_got) < 2:
                frame = await next_kind(far, "ack", "message")
                if frame["type"] == "ack":
                    acks.append(frame)
                else:
                    far_got.append((frame["offset"], frame["text"]))
            ack, again = acks
            await post(a, "x", b"marker")
            far_got += [(f["offset"], f["text"]) for f in await frames(far, 1)]
            near_got = [(f["offset"], f["text"]) for f in await frames(near, 3)]
    assert first[0] == retry[0] == 200
    assert (retry[1]["epoch"], retry[1]["offset"]) == (first[1]["epoch"], first[1]["offset"])
    assert again["offset"] == ack["offset"]
    offset = first[1]["offset"]
    expected = [(offset, "pay once"), (ack["offset"], "from bo"), (ack["offset"] + 1, "marker")]
    assert near_got == far_got == expected


async def quiet_sender_sees(server: BroadcastServer, other: BroadcastServer) -> list[str]:
    """A ``?self=0`` client publishes (with an id, and a bare message) and then
    someone else sends a marker: what the quiet client gets, in order."""
    async with (
        connect(url_of(server, "/q?self=0&name=quiet"), subprotocols=V1, proxy=None) as quiet,  # type: ignore[list-item]
        connect(url_of(other, "/q?name=loud"), subprotocols=V1, proxy=None) as loud,  # type: ignore[list-item]
    ):
        await until_frame(quiet, "joined")
        await until_frame(loud, "joined")
        await quiet.send(json.dumps({"type": "publish", "id": "q1", "text": "mine"}))
        await quiet.send("mine too")
        heard = [f["text"] for f in await frames(loud, 2)]
        assert heard == ["mine", "mine too"]  # everyone else gets them
        await loud.send("marker")
        seen: list[str] = []
        while "marker" not in seen:
            frame = await next_kind(quiet, "ack", "message")
            seen.append(f"ack {frame['offset']}" if frame["type"] == "ack" else frame["text"])
    return seen


async def test_a_client_can_ask_not_to_get_its_own_messages(start_server: StartServer) -> None:
    server = await start_server(ServerOptions())
    with trio.fail_after(TIMEOUT):
        seen = await quiet_sender_sees(server, server)
    assert seen == ["ack 1", "marker"]  # the ack says where; its own never come back


async def test_self_0_holds_through_redis_too(
    redis: RedisServer, start_server: StartServer
) -> None:
    require_redis()
    a = await start_server(ServerOptions(redis=redis.url))
    b = await start_server(ServerOptions(redis=redis.url))
    with trio.fail_after(TIMEOUT):
        seen = await quiet_sender_sees(a, b)
    assert seen == ["ack 1", "marker"]


async def test_self_takes_0_or_1_on_a_v1_connection(start_server: StartServer) -> None:
    server = await start_server(ServerOptions())
    with trio.fail_after(TIMEOUT), pytest.raises(InvalidStatus) as refused:
        async with connect(url_of(server, "/q?self=no"), subprotocols=V1, proxy=None):  # type: ignore[list-item]
            pass
    assert refused.value.response.status_code == 400
