"""Redis as it really runs (issue 27): what it forgets, what it holds, what it sends.

Each test runs real ``redis-server`` processes of its own and a real server:

- **the fence** (R10): Redis restarted from a snapshot, or a replica that lagged
  promoted, has forgotten entries a process read; the next write must start a
  new epoch, not give those offsets to other messages;
- **key lifecycle** (R8): joining writes nothing; a stream lives ``--stream-ttl``
  after its last message; ``--max-rooms`` counts the rooms a POST makes;
- **byte bounds** (T3, R9): a stream holds ``--stream-bytes`` of messages; a room
  load reads about ``--history-bytes``;
- **a join during a frozen Redis** (bug B): the message Redis committed late
  reaches the client that joined meanwhile, once, and nobody twice.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from websockets.trio.client import ClientConnection, connect

from trio_ws_demo import BroadcastServer, ServerOptions
from trio_ws_demo.hub import InboxBudget

from . import chaos
from .backplane_rigs import V1, frames, until_frame
from .conftest import StartServer, url_of
from .redis_server import RedisServer, require_redis
from .wsraw import post_once

TIMEOUT = 30


@pytest.fixture(autouse=True)
def _redis() -> None:
    require_redis()


async def post(server: BroadcastServer, room: str, *messages: str) -> tuple[int, dict[str, Any]]:
    """POST *messages* (one per line) to *room*: the status and the JSON answer."""
    body = "".join(f"{m}\n" for m in messages).encode()
    return await post_once(server.port or 0, f"/{room}", body, "application/x-ndjson")


async def cli(redis: RedisServer, *args: str) -> str:
    return await chaos.redis_cli(redis.port, *args)


async def until_backplane(ws: ClientConnection, up: bool) -> dict[str, object]:
    while True:
        frame = await until_frame(ws, "backplane")
        if frame["up"] is up:
            return frame


# -- the fence --------------------------------------------------------------------


@asynccontextmanager
async def through_a_cable(
    nursery: trio.Nursery, start_server: StartServer, redis: RedisServer
) -> AsyncIterator[tuple[BroadcastServer, chaos.Cable]]:
    cable = chaos.Cable(redis.port)
    await nursery.start(cable.run)
    server = await start_server(
        ServerOptions(redis=f"redis://127.0.0.1:{cable.port}/0", history=10)
    )
    yield server, cable


async def forgets_by_snapshot_restart(
    redis: RedisServer, cable: chaos.Cable, middle: Any, ws: ClientConnection
) -> None:
    """SAVE, three more messages (*middle*), then kill -9 and restart from the dump."""
    assert await cli(redis, "SAVE") == "OK"
    await middle()
    await redis.kill()
    await redis.start()


async def run_fence_scenario(
    nursery: trio.Nursery, start_server: StartServer, redis: RedisServer, forget: Any
) -> None:
    async with through_a_cable(nursery, start_server, redis) as (server, cable):
        async with connect(url_of(server, "/r"), subprotocols=V1, proxy=None) as ws:  # type: ignore[list-item]
            await until_frame(ws, "joined")
            status, first = await post(server, "r", "1", "2", "3")
            assert (status, first["offset"]) == (200, 3)
            epoch = first["epoch"]
            seen = await frames(ws, 3)

            async def middle() -> None:
                status, answer = await post(server, "r", "4", "5", "6")
                assert (status, answer["epoch"], answer["offset"]) == (200, epoch, 6)
                seen.extend(await frames(ws, 3))

            await forget(redis, cable, middle, ws)
            assert [(f["offset"], f["text"]) for f in seen] == [(i, str(i)) for i in range(1, 7)]
            back = await until_backplane(ws, up=True)
            # Redis forgot 4-6: a new epoch, and the clients are told nothing is certain.
            assert back["epoch"] != epoch and back["recovered"] is False
            status, after = await post(server, "r", "7")
            assert status == 200 and after["epoch"] != epoch
            (seventh,) = await frames(ws, 1)
            assert (seventh["offset"], seventh["text"]) == (after["offset"], "7")
        resume = url_of(server, f"/r?since=6&epoch={epoch}")
        async with connect(resume, subprotocols=V1, proxy=None) as again:  # type: ignore[list-item]
            answer = json.loads(await again.recv())
        assert answer["type"] == "resume" and answer["recovered"] is False
    stats = server.statistics().backplane
    assert stats is not None


async def test_a_restart_from_a_snapshot_starts_a_new_epoch(
    nursery: trio.Nursery, start_server: StartServer, tmp_path: Path
) -> None:
    """R10: three POSTs, SAVE, three more, restart from the dump: the next POST
    was offset 4 of the same epoch, and offset 4 had named another message."""
    redis = RedisServer(nursery, snapshot_dir=str(tmp_path))
    await redis.start()
    try:
        with trio.fail_after(TIMEOUT):
            await run_fence_scenario(nursery, start_server, redis, forgets_by_snapshot_restart)
    finally:
        await redis.kill()


async def test_a_lagging_replica_promoted_starts_a_new_epoch(
    nursery: trio.Nursery, start_server: StartServer
) -> None:
    """R10 as a failover does it: the replica lags by three messages when the
    master dies; it is promoted, and the link is moved to it."""
    master = RedisServer(nursery)
    await master.start()
    replica = RedisServer(nursery, replica_of=master.port)  # started once in sync
    await replica.start()

    async def promote_lagging(
        redis: RedisServer, cable: chaos.Cable, middle: Any, ws: ClientConnection
    ) -> None:
        assert await cli(master, "WAIT", "1", "5000") == "1"  # it has 1-3
        # It stops following (as a replica cut off does) and has 1-3 only: then
        # 4-6 are written to the master, which dies, and the replica is promoted.
        assert await cli(replica, "REPLICAOF", "NO", "ONE") == "OK"
        await middle()
        await master.kill()
        await until_backplane(ws, up=False)  # as Sentinel would: down, then promoted
        cable.target = replica.port
        cable.reset()

    try:
        with trio.fail_after(TIMEOUT):
            await run_fence_scenario(nursery, start_server, master, promote_lagging)
    finally:
        replica.thaw()
        await replica.kill()
        await master.kill()


# -- key lifecycle ----------------------------------------------------------------


async def keys(redis: RedisServer) -> list[str]:
    listed = await cli(redis, "--scan", "--pattern", "trio-ws-demo:*")
    return [line for line in listed.splitlines() if line]


async def test_joining_writes_nothing_and_a_stream_leaves_after_its_ttl(
    redis: RedisServer, start_server: StartServer
) -> None:
    """R8: 500 bare joins made 500 streams, and every POST's stream stayed for
    ever. Now joins write no key, and a stream expires --stream-ttl after its
    last message: DBSIZE and used_memory come back down."""
    server = await start_server(ServerOptions(redis=redis.url, stream_ttl=3.0))
    with trio.fail_after(TIMEOUT):
        memory_before = await used_memory(redis)
        await at_once(1000, lambda n: join(server, f"joined-{n}"))
        assert not [key for key in await keys(redis) if ":room:" in key]  # no stream, no marker
        members = [key for key in await keys(redis) if ":members:" in key]
        ttls = [int(await cli(redis, "PTTL", key)) for key in members]
        assert all(ttl > 0 or ttl == -2 for ttl in ttls), ttls  # they expire (-2: gone)

        async def publish(n: int) -> None:
            assert (await post(server, f"posted-{n}", "hi"))[0] == 200

        expired_before = await info_field(redis, "stats", "expired_keys")
        await at_once(1000, publish)
        streams = [key for key in await keys(redis) if ":room:posted-" in key]
        # The first may have expired already, if the thousand took over the TTL.
        expired = await info_field(redis, "stats", "expired_keys") - expired_before
        assert len(streams) + expired == 1000
        memory_full = await used_memory(redis)
        ttls = [int(await cli(redis, "PTTL", key)) for key in streams[:20]]
        assert all(0 < ttl <= 3000 or ttl == -2 for ttl in ttls), ttls  # -2: gone already
        assert any(ttl > 0 for ttl in ttls), ttls
        await trio.sleep(3.0)  # the TTL itself: the time under test, not a wait for an event
        # SCAN deletes what has expired as it meets it; the members left by HDEL.
        assert not [k for k in await keys(redis) if ":room:" in k or ":members:" in k]
        grown, left = memory_full - memory_before, await used_memory(redis) - memory_before
        assert left < grown / 4, (memory_before, memory_full, left)


async def join(server: BroadcastServer, room: str) -> None:
    """Join *room* and leave: the joined frame comes once the room is followed."""
    async with connect(url_of(server, f"/{room}"), subprotocols=V1, proxy=None) as ws:  # type: ignore[list-item]
        assert json.loads(await ws.recv())["type"] == "joined"


async def at_once(count: int, job: Any, width: int = 50) -> None:
    """``job(n)`` for n in range(count), *width* at a time."""
    limit = trio.Semaphore(width)

    async def one(n: int) -> None:
        async with limit:
            await job(n)

    async with trio.open_nursery() as nursery:
        for n in range(count):
            nursery.start_soon(one, n)


async def info_field(redis: RedisServer, section: str, name: str) -> int:
    """One number of ``INFO section``."""
    info = await cli(redis, "INFO", section)
    line = next(line for line in info.splitlines() if line.startswith(f"{name}:"))
    return int(line.split(":")[1])


async def used_memory(redis: RedisServer) -> int:
    return await info_field(redis, "memory", "used_memory")


async def test_max_rooms_counts_the_rooms_a_post_makes(
    redis: RedisServer, start_server: StartServer
) -> None:
    """R8: every POST to a new name made a stream, whatever --max-rooms said."""
    server = await start_server(ServerOptions(redis=redis.url, max_rooms=20))
    with trio.fail_after(TIMEOUT):
        statuses = [(await post(server, f"new-{n}", "hi"))[0] for n in range(25)]
        assert statuses == [200] * 20 + [503] * 5
        assert (await post(server, "new-3", "again"))[0] == 200  # a room it has
        assert len([k for k in await keys(redis) if ":room:" in k]) == 20


async def test_past_maxmemory_nothing_is_written(
    redis: RedisServer, start_server: StartServer
) -> None:
    """R8: the epoch marker was written by an allow-oom function: 300 joins wrote
    1.3 MB past maxmemory. Now a join writes nothing, and a POST is refused."""
    server = await start_server(ServerOptions(redis=redis.url))
    with trio.fail_after(TIMEOUT):
        await cli(redis, "CONFIG", "SET", "maxmemory", "1")
        size = await cli(redis, "DBSIZE")
        await at_once(50, lambda n: join(server, f"full-{n}"))
        status, answer = await post(server, "full-0", "hi")
        assert status == 503 and "OOM" in json.dumps(answer)
        assert await cli(redis, "DBSIZE") == size


# -- byte bounds ----------------------------------------------------------------


async def stream_message_bytes(redis: RedisServer, room: str) -> tuple[int, int]:
    """How many entries and bytes of messages *room*'s stream holds."""
    import coredis

    client: Any = coredis.Redis(host="127.0.0.1", port=redis.port, decode_responses=False)
    async with client:
        entries = await client.xrange(f"trio-ws-demo:room:{room}")
    return len(entries), sum(len(e.field_values.get(b"m", b"")) for e in entries)


async def test_a_stream_holds_at_most_stream_bytes(
    redis: RedisServer, start_server: StartServer
) -> None:
    """T3: streams were trimmed by count only: 81 messages of 1 MiB added 100 MiB
    to Redis for one room. Now the oldest go once --stream-bytes is full."""
    server = await start_server(
        ServerOptions(redis=redis.url, history_bytes=16 * 1024, stream_bytes=64 * 1024)
    )
    message = "x" * 4096
    with trio.fail_after(TIMEOUT):
        for _ in range(10):
            assert (await post(server, "big", *[message] * 10))[0] == 200
        count, size = await stream_message_bytes(redis, "big")
    assert size <= 64 * 1024 and size > 64 * 1024 - 2 * 4096, (count, size)


async def test_a_room_load_reads_about_history_bytes(
    redis: RedisServer, start_server: StartServer
) -> None:
    """R9: a load read --history entries whatever their size (1,000 of 1 MiB is
    1 GB in one reply). Now it reads pages until --history-bytes is full."""
    writer = await start_server(ServerOptions(redis=redis.url))
    message = "y" * 8192
    with trio.fail_after(TIMEOUT):
        for _ in range(10):
            assert (await post(writer, "deep", *[message] * 20))[0] == 200  # 1.6 MB
        reader = await start_server(
            ServerOptions(redis=redis.url, history=1000, history_bytes=64 * 1024)
        )
        sent_before = await redis_output_bytes(redis)
        async with connect(url_of(reader, "/deep"), subprotocols=V1, proxy=None) as ws:  # type: ignore[list-item]
            joined = json.loads(await ws.recv())
        sent = await redis_output_bytes(redis) - sent_before
    assert 0 < joined["history"] <= 8
    assert sent < 4 * 64 * 1024, sent  # a few pages, not 1.6 MB


async def redis_output_bytes(redis: RedisServer) -> int:
    return await info_field(redis, "stats", "total_net_output_bytes")


async def resume(server: BroadcastServer, room: str, since: int, epoch: str) -> dict[str, Any]:
    """Resume in *room* from *since*: the resume frame, with the offsets of the
    messages that came after it if it recovered."""
    url = url_of(server, f"/{room}?since={since}&epoch={epoch}")
    async with connect(url, subprotocols=V1, proxy=None, max_size=None) as ws:  # type: ignore[list-item]
        answer: dict[str, Any] = json.loads(await ws.recv())
        assert answer["type"] == "resume", answer
        offsets: list[int] = []
        while answer["recovered"] and (not offsets or offsets[-1] < answer["offset"]):
            frame = json.loads(await ws.recv())
            if frame["type"] == "message":
                offsets.append(frame["offset"])
    answer["offsets"] = offsets
    return answer


async def test_resumes_read_their_gap_in_pages_within_one_bound(
    redis: RedisServer, start_server: StartServer
) -> None:
    """T11: a resume read its whole gap in one XRANGE whatever its size, and
    only then compared it with BACKFILL_BYTES: four resumes at once across 39
    MiB read 156 MiB. Now each reads pages and stops past BACKFILL_BYTES, and
    all of a process's resumes share one bound of BACKFILL_BYTES in flight."""
    from trio_ws_demo.backplane.link import BACKFILL_BYTES

    message = "z" * (1024 * 1024 - 64)  # one per POST: a body is at most 1 MiB
    writer = await start_server(ServerOptions(redis=redis.url, stream_bytes=64 * 1024 * 1024))
    with trio.fail_after(TIMEOUT):
        for _ in range(40):
            status, answer = await post(writer, "gap", message)
            assert status == 200
        epoch = answer["epoch"]
        reader = await start_server(ServerOptions(redis=redis.url, history=5))
        async with connect(url_of(reader, "/gap"), subprotocols=V1, proxy=None) as ws:  # type: ignore[list-item]
            assert json.loads(await ws.recv())["type"] == "joined"
            sent_before = await redis_output_bytes(redis)
            answers: list[dict[str, Any]] = []

            async def far(_: int) -> None:  # 39 MiB behind the history
                answers.append(await resume(reader, "gap", 0, epoch))

            await at_once(4, far)
            sent = await redis_output_bytes(redis) - sent_before
            near = await resume(reader, "gap", 30, epoch)  # 9 MiB: several pages
    assert [a["recovered"] for a in answers] == [False] * 4
    assert sent < 2 * BACKFILL_BYTES, sent
    assert near["recovered"] is True and near["offsets"] == list(range(31, 41)), near


# -- a join during a frozen Redis ---------------------------------------------------


async def test_a_client_that_joined_during_the_outage_gets_the_message_redis_committed_late(
    redis: RedisServer, start_server: StartServer
) -> None:
    """Bug B: a write that timed out is delivered here to the clients present;
    Redis commits it on thawing. A client that joined meanwhile never got it:
    it was only recorded. Now it gets it once, and the others not again."""
    server = await start_server(ServerOptions(redis=redis.url))
    other = await start_server(ServerOptions(redis=redis.url))
    room = "/frozen"
    with trio.fail_after(TIMEOUT):
        async with (
            connect(url_of(server, room), subprotocols=V1, proxy=None) as present,  # type: ignore[list-item]
            connect(url_of(other, room), subprotocols=V1, proxy=None) as far,  # type: ignore[list-item]
        ):
            await until_frame(present, "joined")
            await until_frame(far, "joined")
            await present.send("before")
            assert [f["text"] for f in await frames(present, 1)] == ["before"]
            assert [f["text"] for f in await frames(far, 1)] == ["before"]
            redis.freeze()
            await present.send("in flight")  # written to Redis, unanswered
            await until_backplane(present, up=False)
            (local,) = await frames(present, 1)  # delivered here, unconfirmed
            assert local["text"] == "in flight"
            async with connect(url_of(server, room), subprotocols=V1, proxy=None) as late:  # type: ignore[list-item]
                await until_frame(late, "joined")
                redis.thaw()  # Redis reads the write it was sent, and commits it
                await until_backplane(late, up=True)
                await present.send("after")
                got_late = [f["text"] for f in await frames(late, 2)]
                got_present = [f["text"] for f in await frames(present, 1)]
                got_far = [f["text"] for f in await frames(far, 2)]
    assert got_late == ["in flight", "after"]
    assert got_present == ["after"]  # not "in flight" a second time
    assert got_far == ["in flight", "after"]


# -- --redis-wait -----------------------------------------------------------------


async def test_redis_wait_confirms_a_post_only_once_a_replica_has_it(
    nursery: trio.Nursery, start_server: StartServer
) -> None:
    """What a failover can lose is what only the master had: with --redis-wait 1
    a POST is answered 200 once a replica has its messages, and 503 when none
    confirms them in time (the replica frozen)."""
    master = RedisServer(nursery)
    await master.start()
    replica = RedisServer(nursery, replica_of=master.port)  # started once in sync
    await replica.start()
    try:
        server = await start_server(
            ServerOptions(redis=f"redis://127.0.0.1:{master.port}/0", redis_wait=1)
        )
        with trio.fail_after(TIMEOUT):
            status, answer = await post(server, "safe", "one", "two")
            assert (status, answer["offset"]) == (200, 2)
            replica.freeze()
            status, answer = await post(server, "safe", "three")
            assert status == 503 and "only 0 of 1 Redis replicas" in json.dumps(answer)
    finally:
        replica.thaw()
        await replica.kill()
        await master.kill()


# -- large messages ---------------------------------------------------------------


@pytest.mark.parametrize("size", [1536 * 1024, 4 * 1024 * 1024])
async def test_a_message_up_to_max_message_size_crosses_processes(
    redis: RedisServer, start_server: StartServer, size: int
) -> None:
    """Any message up to --max-message-size passes through Redis (1.5 MiB was
    reported refused with "invalid bulk length"; here with Redis 7.0, text and
    binary, at 1.5 MiB and at the limit itself)."""
    # Room for both in a client's queue (the default holds less than two 4 MiB
    # messages: a client that reads them slowly would be closed as slow).
    options = ServerOptions(
        redis=redis.url,
        max_message_size=size,
        stream_bytes=4 * size,
        budget=InboxBudget(max_bytes=4 * size),
    )
    a, b = await start_server(options), await start_server(options)
    text, binary = "t" * size, bytes(range(256)) * (size // 256)
    with trio.fail_after(TIMEOUT):
        async with (
            connect(url_of(a, "/big"), proxy=None, max_size=None) as sender,
            connect(url_of(b, "/big"), proxy=None, max_size=None) as far,
        ):
            await sender.send(text)
            await sender.send(binary)
            got = [await far.recv(), await far.recv()]
    assert got[0] == text and got[1] == binary
