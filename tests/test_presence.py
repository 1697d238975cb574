"""Presence: names, join/leave frames coalesced to one a second, the listing,
and, with --redis, presence across processes (a SIGKILLed one's members leave)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import jwt
import trio
from websockets.trio.client import ClientConnection, connect

from trio_ws_demo import AccessPolicy, ServerOptions

from .conftest import StartServer, url_of
from .processes import LineReader, Process, run_cli
from .redis_server import RedisServer
from .wsraw import http_exchange

TIMEOUT = 10
V1 = ["trio-ws-demo.v1"]
KEY = "k" * 32


async def until(ws: ClientConnection, kind: str) -> dict[str, object]:
    while True:
        frame = json.loads(await ws.recv())
        if frame["type"] == kind:
            return dict(frame)


async def who(port: int, room: str, token: str | None = None) -> tuple[int, dict[str, object]]:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    answer = await http_exchange(
        port, f"GET /rooms/{room} HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode()
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    return status, json.loads(body) if status == 200 else {}


async def test_names_come_from_the_query_and_presence_frames_follow_the_joined_frame(
    start_server: StartServer,
) -> None:
    server = await start_server(ServerOptions(history=5))
    with trio.fail_after(TIMEOUT):
        async with connect(
            url_of(server, "/lobby?name=alice"), subprotocols=V1, proxy=None
        ) as alice:  # type: ignore[list-item]
            first = json.loads(await alice.recv())
            assert first["type"] == "joined"
            mine = await until(alice, "presence")
            assert (mine["event"], mine["name"], mine["clients"]) == ("join", "alice", 1)
            async with connect(
                url_of(server, "/lobby?name=bob"), subprotocols=V1, proxy=None
            ) as bob:  # type: ignore[list-item]
                assert json.loads(await bob.recv())["type"] == "joined"
                seen = await until(alice, "presence")
                assert (seen["event"], seen["joined"], seen["clients"]) == ("join", ["bob"], 2)
                status, listing = await who(server.port, "lobby")
                assert status == 200
                assert [m["name"] for m in listing["members"]] == ["alice", "bob"]  # type: ignore[index]
            gone = await until(alice, "presence")
            assert (gone["event"], gone["name"], gone["clients"]) == ("leave", "bob", 1)
            async with connect(url_of(server, "/lobby"), subprotocols=V1, proxy=None):  # type: ignore[list-item]
                assert (await until(alice, "presence"))["name"] == "anonymous"


async def test_a_crowd_joining_at_once_makes_one_frame_a_second(
    start_server: StartServer,
) -> None:
    server = await start_server()
    with trio.fail_after(TIMEOUT):
        async with connect(
            url_of(server, "/big?name=watcher"), subprotocols=V1, proxy=None
        ) as watcher:  # type: ignore[list-item]
            await until(watcher, "presence")  # its own join
            started = trio.current_time()
            async with trio.open_nursery() as nursery:
                crowd_in = trio.Event()
                joined = 0

                async def member(i: int) -> None:
                    nonlocal joined
                    async with connect(url_of(server, f"/big?name=m{i}"), proxy=None):
                        joined += 1
                        if joined == 150:
                            crowd_in.set()
                        await trio.sleep_forever()

                for i in range(150):
                    nursery.start_soon(member, i)
                await crowd_in.wait()
                frames = []
                names: list[str] = []
                while len(names) < 150:
                    frame = await until(watcher, "presence")
                    frames.append((trio.current_time(), frame))
                    names += frame["joined"]  # type: ignore[operator]
                    names += ["?"] * int(frame.get("more", 0))  # type: ignore[call-overload]
                nursery.cancel_scope.cancel()
    # At most one frame per second, each capped at 100 names with the count.
    elapsed = frames[-1][0] - started
    assert len(frames) <= elapsed + 1
    assert all(len(frame["joined"]) <= 100 for _, frame in frames)  # type: ignore[arg-type]
    assert frames[-1][1]["clients"] == 151


async def test_the_name_comes_from_the_token_and_the_listing_needs_the_read_right(
    start_server: StartServer,
) -> None:
    server = await start_server(ServerOptions(access=AccessPolicy(jwt_secret=KEY)))

    def signed(sub: str, rooms: dict[str, str]) -> str:
        return jwt.encode({"exp": int(time.time()) + 60, "sub": sub, "rooms": rooms}, KEY)

    alice = signed("alice", {"chat/*": "rw"})
    with trio.fail_after(TIMEOUT):
        url = url_of(server, f"/chat/lobby?token={alice}&name=mallory")  # the token wins
        async with connect(url, subprotocols=V1, proxy=None) as ws:  # type: ignore[list-item]
            assert (await until(ws, "presence"))["name"] == "alice"
            assert (await who(server.port, "chat/lobby"))[0] == 401
            assert (await who(server.port, "chat/lobby", signed("x", {"ops/*": "r"})))[0] == 403
            status, listing = await who(server.port, "chat/lobby", alice)
    assert status == 200 and [m["name"] for m in listing["members"]] == ["alice"]  # type: ignore[index]


async def test_favicon_and_reserved_paths_are_not_rooms(start_server: StartServer) -> None:
    server = await start_server()
    with trio.fail_after(TIMEOUT):
        answer = await http_exchange(server.port, b"GET /favicon.ico HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 404")


@asynccontextmanager
async def two_processes(redis: RedisServer) -> AsyncIterator[tuple[str, str, Process]]:
    """Two real ``serve --redis`` processes with --ping-interval 1: their ws:// URLs,
    and the second."""
    flags = ("--redis", redis.url, "--ping-interval", "1", "--log-level", "warning")
    async with (
        run_cli("serve", "--port", "0", *flags) as a,
        run_cli("serve", "--port", "0", *flags) as b,
    ):
        yield (await a.readline()).split()[2], (await b.readline()).split()[2], b


async def test_presence_covers_every_process_and_a_killed_one_leaves_in_time(
    redis: RedisServer,
) -> None:
    """Two real `serve --redis` processes with --ping-interval 1: members on B show
    on A's list and frames; B killed with SIGKILL, its members leave within 2 s."""
    with trio.fail_after(30):
        async with two_processes(redis) as (base_a, base_b, b):
            port_a = int(base_a.rsplit(":", 1)[1])
            async with connect(f"{base_a}/r?name=alice", subprotocols=V1, proxy=None) as alice:  # type: ignore[list-item]
                assert (await until(alice, "presence"))["name"] == "alice"
                async with connect(f"{base_b}/r?name=bob", subprotocols=V1, proxy=None):  # type: ignore[list-item]
                    seen = await until(alice, "presence")
                    assert (seen["joined"], seen["clients"]) == (["bob"], 2)
                    _, listing = await who(port_a, "r")
                    assert sorted(m["name"] for m in listing["members"]) == ["alice", "bob"]  # type: ignore[attr-defined]
                    b.process.kill()  # SIGKILL: no goodbye
                    killed = trio.current_time()
                    gone = await until(alice, "presence")
                    left_after = trio.current_time() - killed
                _, listing = await who(port_a, "r")
            assert (gone["left"], gone["clients"]) == (["bob"], 1)
    assert [m["name"] for m in listing["members"]] == ["alice"]  # type: ignore[index]
    assert left_after <= 2 * 1 + 1.5  # 2 x --ping-interval, plus a read and a frame


async def test_malformed_presence_fields_in_redis_are_skipped_not_fatal(
    redis: RedisServer,
) -> None:
    """Finding R18: a members field holding a 400-digit number, JSON nested deep,
    an infinite time or a name that is not text stopped the server (an
    OverflowError or RecursionError out of the presence reader). Now each is
    skipped with a WARNING, and a good field written beside them still shows."""
    flags = ("--redis", redis.url, "--ping-interval", "1")
    with trio.fail_after(30):
        async with run_cli("serve", "--port", "0", *flags) as serve:
            base = (await serve.readline()).split()[2]
            async with connect(f"{base}/r?name=alice", subprotocols=V1, proxy=None) as alice:  # type: ignore[list-item]
                assert (await until(alice, "presence"))["name"] == "alice"
                members = "trio-ws-demo:members:r"
                fields = {
                    "ghost:1.1": '["big", ' + "9" * 400 + "]",
                    "ghost:2.1": "[" * 20_000 + "]" * 20_000,
                    "ghost:3.1": '["forever", 1e999]',
                    "ghost:4.1": "[7, 1.0]",
                    "ghost:5.1": '["carol", 1.0]',
                }
                for field, value in fields.items():
                    await trio.run_process(
                        ["redis-cli", "-p", str(redis.port), "HSET", members, field, value],
                        stdout=subprocess.DEVNULL,
                    )
                await trio.run_process(
                    ["redis-cli", "-p", str(redis.port), "SET", "trio-ws-demo:alive:ghost", "1"],
                    stdout=subprocess.DEVNULL,
                )
                seen = await until(alice, "presence")
                assert seen["joined"] == ["carol"], seen
                await serve.log.wait_for("skipped 4 malformed presence fields")
                await alice.send("still here")  # the server is still serving
                while (frame := json.loads(await alice.recv()))["type"] != "message":
                    pass
                assert frame["text"] == "still here"


async def test_presence_is_written_again_after_redis_refused_it(redis: RedisServer) -> None:
    """Finding R12: after Redis refused writes (``maxmemory``) for longer than the
    alive keys live, the first process to sync again took the other for dead
    and deleted its members, who were never written again: they were gone from
    its list for good. Now a refused sync, or a read that finds one's own
    fields missing, writes the full set again: the member who left comes back."""
    cli = ["redis-cli", "-p", str(redis.port)]
    with trio.fail_after(30):
        async with (
            two_processes(redis) as (base_a, base_b, _),
            connect(f"{base_a}/r?name=alice", subprotocols=V1, proxy=None) as alice,  # type: ignore[list-item]
            connect(f"{base_b}/r?name=bob", subprotocols=V1, proxy=None) as bob,  # type: ignore[list-item]
        ):
            for ws in (alice, bob):
                while (await until(ws, "presence"))["clients"] != 2:
                    pass
            async with redis_events(redis.port, "Ex", "__keyevent@0__:expired") as events:
                await trio.run_process(
                    [*cli, "CONFIG", "SET", "maxmemory", "1"], stdout=subprocess.DEVNULL
                )
                # Both alive keys expire (2 s) while neither can be refreshed.
                for _ in range(2):
                    await events.wait_for("trio-ws-demo:alive:")
            await trio.run_process(
                [*cli, "CONFIG", "SET", "maxmemory", "0"], stdout=subprocess.DEVNULL
            )
            # The first to sync takes the other for dead: someone leaves...
            left_on = trio.Event()
            first: list[tuple[ClientConnection, dict[str, object]]] = []

            async def watch(ws: ClientConnection) -> None:
                frame = await until(ws, "presence")
                first.append((ws, frame))
                left_on.set()

            async with trio.open_nursery() as nursery:
                for ws in (alice, bob):
                    nursery.start_soon(watch, ws)
                await left_on.wait()
                nursery.cancel_scope.cancel()
            ws, gone = first[0]
            assert gone["event"] == "leave" and gone["clients"] == 1, gone
            with trio.fail_after(8):  # 4 syncs: found missing, written, read, framed
                back = await until(ws, "presence")  # ... and comes back
    assert back["joined"] == gone["left"] and back["clients"] == 2, back


async def written_in_redis(port: int, room: str, count: int) -> None:
    """Return once room *room*'s members hash holds *count* fields (checked at
    each change Redis announces to a keyspace subscriber: no polling)."""
    key = f"trio-ws-demo:members:{room}"
    async with redis_events(port, "Kh", f"__keyspace@0__:{key}") as events:
        while True:
            hlen = await trio.run_process(
                ["redis-cli", "-p", str(port), "HLEN", key], capture_stdout=True
            )
            if int(hlen.stdout) >= count:
                return
            await events.wait_for("hset")


@asynccontextmanager
async def redis_events(port: int, kinds: str, channel: str) -> AsyncIterator[LineReader]:
    """Redis's keyspace notifications of *kinds* on *channel*, a line each, from
    a ``redis-cli SUBSCRIBE`` that is listening when this yields."""
    cli = ["redis-cli", "-p", str(port)]
    await trio.run_process(
        [*cli, "CONFIG", "SET", "notify-keyspace-events", kinds], stdout=subprocess.DEVNULL
    )
    process = await trio.lowlevel.open_process(
        [*cli, "--csv", "SUBSCRIBE", channel], stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        events = LineReader(process.stdout)
        await events.wait_for("subscribe")
        yield events
    finally:
        process.kill()
        await process.wait()
        await process.stdout.aclose()


async def test_the_room_listing_shows_members_on_every_process(redis: RedisServer) -> None:
    """``GET /rooms/ROOM`` on a process with no client in the room listed no one
    (presence syncs only rooms with clients here); now it reads the room's
    members on the other processes from Redis: carol and dave, both on B."""
    with trio.fail_after(30):
        async with two_processes(redis) as (base_a, base_b, _):
            port_a = int(base_a.rsplit(":", 1)[1])
            async with (
                connect(f"{base_b}/r?name=carol", subprotocols=V1, proxy=None),  # type: ignore[list-item]
                connect(f"{base_b}/r?name=dave", subprotocols=V1, proxy=None),
            ):
                await written_in_redis(redis.port, "r", 2)
                status, listing = await who(port_a, "r")
                assert status == 200
                _, nowhere = await who(port_a, "empty")
    assert sorted(m["name"] for m in listing["members"]) == ["carol", "dave"]  # type: ignore[attr-defined]
    assert listing["clients"] == 2
    assert nowhere["members"] == [] and nowhere["clients"] == 0
