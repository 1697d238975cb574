"""Probes a load balancer can trust (issue 29, item 2).

``/livez`` is 200 while the event loop answers; ``/readyz`` is 200 while the
process serves, and stays 200 through a Redis outage (the process still
serves its own clients: an outage must not pull every process out of a load
balancer at once), saying ``"backplane": "down"``; ``/healthz`` keeps its
detail (503 then). ``/health`` and the probes are never rooms.
"""

from __future__ import annotations

import json

import trio
import trio.testing
from websockets.trio.client import connect

from trio_ws_demo import BroadcastServer, ServerOptions

from .backplane_rigs import V1, until_frame
from .conftest import StartServer, url_of
from .redis_server import RedisServer, require_redis
from .wsraw import http_exchange, upgrade_request

TIMEOUT = 15


async def get(server: BroadcastServer, path: str) -> tuple[int, bytes]:
    answer = await http_exchange(
        server.port or 0, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_livez_and_readyz_answer_and_health_is_no_room(start_server: StartServer) -> None:
    server = await start_server(ServerOptions(instance="probe-1"))
    with trio.fail_after(TIMEOUT):
        live, ready = await get(server, "/livez"), await get(server, "/readyz")
        health, readyz_upgrade = await get(server, "/health"), await get(server, "/readyz?x=1")
    assert (live[0], json.loads(live[1])) == (200, {"status": "alive", "instance": "probe-1"})
    assert (ready[0], json.loads(ready[1])) == (200, {"status": "ready", "instance": "probe-1"})
    assert health[0] == 404  # a mistyped probe fails; it was the chat page (200)
    assert readyz_upgrade[0] == 200


async def test_a_redis_outage_leaves_a_process_ready(
    redis: RedisServer, start_server: StartServer
) -> None:
    require_redis()
    server = await start_server(ServerOptions(redis=redis.url))
    with trio.fail_after(TIMEOUT):
        async with connect(url_of(server, "/r"), subprotocols=V1, proxy=None) as ws:  # type: ignore[list-item]
            await until_frame(ws, "joined")
            assert json.loads((await get(server, "/readyz"))[1])["backplane"] == "up"
            await redis.kill()
            assert (await until_frame(ws, "backplane"))["up"] is False
            status, body = await get(server, "/readyz")
            health = (await get(server, "/healthz"))[0]
    assert (status, json.loads(body)["backplane"]) == (200, "down")
    assert health == 503  # the detail stays where it was


async def test_while_redis_is_reached_readyz_says_starting_and_upgrades_wait(
    redis: RedisServer, nursery: trio.Nursery
) -> None:
    """A process that listens but has not reached Redis yet answers its probes
    (it did not accept at all: a probe hung in the listen backlog) and tells a
    client to come back, rather than admitting it without shared history."""
    require_redis()
    redis.freeze()  # Redis answers nothing: the start waits for it (up to 2 s, then fails)
    server = BroadcastServer(ServerOptions(redis=redis.url))
    serving = trio.Event()

    async def start() -> None:
        await nursery.start(server.run, "127.0.0.1", 0)
        serving.set()

    nursery.start_soon(start)
    with trio.fail_after(TIMEOUT):
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)  # listening; asking Redis
        assert server.port is not None and not serving.is_set()
        ready, live = await get(server, "/readyz"), await get(server, "/livez")
        upgrade = await http_exchange(server.port, upgrade_request())
        redis.thaw()
        await serving.wait()
        assert (await get(server, "/readyz"))[0] == 200
        async with connect(url_of(server, "/r"), proxy=None) as ws:
            await ws.send("in")
            assert await ws.recv() == "in"
    assert (ready[0], json.loads(ready[1])["status"]) == (503, "starting")
    assert live[0] == 200
    head, _, body = upgrade.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in head, head
    assert json.loads(body)["error"] == "server starting"
