"""Scale-out under faults: each row of issue 18's table, as a test with figures.

Two real ``serve --redis`` processes, a real redis-server, each server behind a
:class:`~tests.chaos.Cable` it can lose Redis through, and the ``websockets``
checker of ``chaos.py``: every run must end with 0 lost, 0 duplicates, 0
conflicting keys and 0 unannounced gaps. ``nox -s chaos`` runs the same for
longer and prints the table.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from websockets.exceptions import InvalidStatus
from websockets.trio.client import ClientConnection, connect

from trio_ws_demo import BroadcastServer, ServerOptions

from . import chaos
from .backplane_rigs import (
    V1,
    frames,
    healthz,
    metrics,
    next_frame_but_no_message,
    serve,
    until_frame,
)
from .conftest import StartServer, url_of
from .processes import run_cli
from .redis_server import RedisServer, require_redis

TIMEOUT = 60


@pytest.fixture(autouse=True)
def _redis() -> None:
    require_redis()


async def run(fault: chaos.Fault, **options: object) -> chaos.Figures:
    with trio.fail_after(TIMEOUT):
        figures = await chaos.campaign(fault, **options)  # type: ignore[arg-type]
    print(chaos.table([(fault.__name__, figures)]))
    assert figures.accepted > 0 and figures.published > 0
    return figures


def clean(figures: chaos.Figures) -> tuple[int, int, int, int]:
    return figures.lost, figures.duplicates, figures.conflicts, figures.gaps


async def test_row_1_a_partition_of_one_process_never_gives_one_offset_two_messages() -> None:
    """Row 1: rooms took the shared epoch before the link was up, so local
    messages took shared offsets (27 conflicting keys in the campaign)."""
    figures = await run(chaos.partition, rooms=4)
    assert clean(figures) == (0, 0, 0, 0)


async def test_row_3_after_client_kill_everything_redis_accepted_arrives() -> None:
    """Row 3: every process re-adopted at the stream's end and skipped what it
    had not read yet: accepted messages reached no listener."""
    figures = await run(chaos.client_kill)
    assert clean(figures) == (0, 0, 0, 0)


async def test_row_4_a_write_that_timed_out_but_was_committed_is_not_delivered_twice() -> None:
    """Row 4: with Redis frozen during writes, messages were delivered locally and
    committed later; resuming clients got them twice under two offsets."""
    figures = await run(chaos.freeze)
    assert clean(figures) == (0, 0, 0, 0)


async def test_row_5_a_deleted_stream_starts_a_new_epoch() -> None:
    """Row 5: after DEL of the stream, offsets restarted under the same epoch:
    messages silently skipped, keys conflicting."""
    figures = await run(chaos.delete_streams)
    assert clean(figures) == (0, 0, 0, 0)


async def test_a_killed_server_costs_resuming_clients_nothing() -> None:
    figures = await run(chaos.kill_server)
    assert clean(figures) == (0, 0, 0, 0)


async def test_a_late_resume_beyond_history_under_publishers_is_recovered_exactly() -> None:
    """Issue 27, bug A and after: resumes from ~300 behind (--history 20) while
    publishers run. Before, some were recovered: true over a hole; then, with a
    paged backfill that stopped where the history began, every one was
    recovered: false (the history had moved on). Now each reads to the stream's
    end, meets the history, and misses nothing."""
    figures = await run(chaos.late_resume, seconds=8.0)
    assert clean(figures) == (0, 0, 0, 0)
    assert figures.announced == 0


async def test_a_join_while_redis_is_frozen_gets_what_redis_committed_later() -> None:
    """Issue 27, bug B as a campaign: listeners that join while Redis is frozen
    are owed every message Redis accepted after they came, its writer's own
    in-flight messages included."""
    figures = await run(chaos.join_while_frozen, seconds=8.0)
    assert clean(figures) == (0, 0, 0, 0)


# -- rows with a closer look: servers in this process, one Redis -------------------------


@asynccontextmanager
async def joined_on_both(
    a: BroadcastServer, b: BroadcastServer, room: str
) -> AsyncIterator[tuple[ClientConnection, ClientConnection]]:
    """A v1 client of *room* on each server, past its ``joined`` frame."""
    async with (
        connect(url_of(a, room), subprotocols=V1, proxy=None) as near,  # type: ignore[list-item]
        connect(url_of(b, room), subprotocols=V1, proxy=None) as far,  # type: ignore[list-item]
    ):
        await until_frame(near, "joined")
        await until_frame(far, "joined")
        yield near, far


async def test_row_2_a_room_that_fails_to_load_is_retried_and_healthz_says_so(
    redis: RedisServer, start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Row 2: one failed load and the process never read the room again (its
    clients got 0 of 16 messages, not even their own; /healthz said 200)."""
    await chaos.redis_cli(redis.port, "SET", "trio-ws-demo:room:w", "not a stream")
    a = await start_server(ServerOptions(redis=redis.url))
    b = await start_server(ServerOptions(redis=redis.url))
    with trio.fail_after(TIMEOUT):
        async with joined_on_both(a, b, "/w") as (ws, far):
            status, health = await healthz(a.port)
            assert (status, health["backplane"], health["rooms_not_followed"]) == (
                503, "degraded", 1,
            )  # fmt: skip
            await ws.send("while it cannot load")  # local: its sender hears it
            assert (await frames(ws, 1))[0]["text"] == "while it cannot load"
            await chaos.redis_cli(redis.port, "DEL", "trio-ws-demo:room:w")
            assert (await until_frame(ws, "backplane"))["up"] is True  # the retry
            assert (await until_frame(far, "backplane"))["up"] is True
            assert (await healthz(a.port))[0] == 200
            await ws.send("shared again")
            assert (await frames(ws, 1))[0]["text"] == "shared again"
            assert (await frames(far, 1))[0]["text"] == "shared again"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("could not load room 'w'" in line and "retry" in line for line in warnings)


async def test_a_room_that_failed_to_load_waits_for_its_retry_time_whoever_joins(
    redis: RedisServer, start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Finding R14: follow() ignored the load backoff, so every client joining a
    room whose load had failed loaded it again at once (ten joins: ten more
    failed loads). Now the joins in the backoff stay local and only the
    loader's retries, at 0.5 s, 1.5 s, 3.5 s ... after the failure, try again."""
    await chaos.redis_cli(redis.port, "SET", "trio-ws-demo:room:w", "not a stream")
    a = await start_server(ServerOptions(redis=redis.url))

    def failed_loads() -> int:
        return sum("could not load room 'w'" in r.getMessage() for r in caplog.records)

    with trio.fail_after(TIMEOUT):
        async with connect(url_of(a, "/w"), subprotocols=V1, proxy=None) as first:  # type: ignore[list-item]
            await until_frame(first, "joined")
            assert failed_loads() == 1
            failed_at = trio.current_time()
            for _ in range(10):
                async with connect(url_of(a, "/w"), subprotocols=V1, proxy=None) as ws:  # type: ignore[list-item]
                    await until_frame(ws, "joined")
                    await ws.send("local")
                    assert (await frames(ws, 1))[0]["text"] == "local"
            elapsed = trio.current_time() - failed_at
    retries_due = sum(1 for due in (0.5, 1.5, 3.5, 7.5, 15.5, 25.5) if due <= elapsed)
    assert failed_loads() <= 1 + retries_due, (failed_loads(), elapsed)


async def test_row_6_a_message_redis_refuses_reaches_nobody_and_its_sender_is_told(
    redis: RedisServer, start_server: StartServer
) -> None:
    """Row 6: OOM was taken for a lost link: the writer's process went local
    while the others stayed up, and their clients lost messages with no notice."""
    a = await start_server(ServerOptions(redis=redis.url))
    b = await start_server(ServerOptions(redis=redis.url))
    with trio.fail_after(TIMEOUT):
        async with joined_on_both(a, b, "/o") as (ws, far):
            await chaos.redis_cli(redis.port, "CONFIG", "SET", "maxmemory", "1")
            await ws.send("refused")
            error = await next_frame_but_no_message(ws, "error")
            assert "OOM" in str(error["reason"])
            status, health = await healthz(a.port)
            assert (status, health["backplane"], health["redis_refuses_messages"]) == (
                503, "degraded", True,
            )  # fmt: skip
            assert "trio_ws_demo_backplane_refused_total 1.0" in await metrics(a.port)
            await chaos.redis_cli(redis.port, "CONFIG", "SET", "maxmemory", "0")
            await ws.send("after")
            # Neither side ever saw the refused message, nor a lost link ("after"
            # is the first message the stream takes: it starts, recovered: true).
            for client in (ws, far):
                after = await next_frame_but_no_message(
                    client, "message", allow={"error", "presence", "backplane"}
                )
                assert after["text"] == "after"
    stats = a.statistics().backplane
    assert stats is not None and stats.reconnects == 0 and stats.refused == 1


async def test_row_7_a_frozen_redis_is_noticed_within_2_seconds(
    redis: RedisServer, start_server: StartServer
) -> None:
    """Row 7: detection took 3.1-4.0 s behind a blocking XREAD. The documented
    bound is 2 s: that bound is the behaviour under test, not a speed."""
    a = await start_server(ServerOptions(redis=redis.url))
    with trio.fail_after(TIMEOUT):
        async with connect(url_of(a, "/z"), subprotocols=V1, proxy=None) as ws:  # type: ignore[list-item]
            await until_frame(ws, "joined")
            redis.freeze()
            with trio.fail_after(2):
                assert (await until_frame(ws, "backplane"))["up"] is False
                assert (await healthz(a.port))[0] == 503


async def test_row_8_a_resume_from_further_back_than_history_is_served_from_the_stream(
    redis: RedisServer, start_server: StartServer
) -> None:
    """Row 8: the resume window was --history, although the stream keeps 1,000+
    entries; recovered: false on every kill."""
    a = await start_server(ServerOptions(redis=redis.url, history=5))
    with trio.fail_after(TIMEOUT):
        async with connect(url_of(a, "/h"), subprotocols=V1, proxy=None) as ws:  # type: ignore[list-item]
            await until_frame(ws, "joined")
            for i in range(1, 41):
                await ws.send(f"m{i}")
            born = await until_frame(ws, "backplane")  # m1 starts the stream's epoch
            await frames(ws, 40)
        resume = url_of(a, f"/h?since=10&epoch={born['epoch']}")
        async with connect(resume, subprotocols=V1, proxy=None) as again:  # type: ignore[list-item]
            first = json.loads(await again.recv())
            missed = await frames(again, 30)
    assert first["type"] == "resume" and first["recovered"] is True
    assert [f["text"] for f in missed] == [f"m{i}" for i in range(11, 41)]


async def test_row_10_limits_hold_across_the_room_load(
    redis: RedisServer, start_server: StartServer
) -> None:
    """Row 10: follow() awaited between the limit checks and registration, so a
    storm onto new rooms overran --max-rooms."""
    a = await start_server(ServerOptions(redis=redis.url, max_rooms=3, history=10))
    opened = 0
    refused = 0

    all_answered = trio.Event()

    def answered() -> None:
        if opened + refused == 20:
            all_answered.set()

    async def join(room: int) -> None:
        nonlocal opened, refused
        try:
            async with connect(url_of(a, f"/s{room}"), proxy=None) as ws:
                await ws.send("here")
                await ws.recv()
                opened += 1
                answered()
                await done.wait()
        except InvalidStatus as exc:
            assert exc.response.status_code == 503
            refused += 1
            answered()

    done = trio.Event()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            for room in range(20):
                nursery.start_soon(join, room)
            await all_answered.wait()
            assert len(a.rooms) <= 3
            done.set()
    assert (opened, refused) == (3, 17)


async def test_echo_says_when_redis_refused_its_message(redis: RedisServer) -> None:
    """What a person sees: the refusal in one line, and exit 1 (the echo is missing)."""
    with trio.fail_after(TIMEOUT):
        async with serve(redis.url) as (_, base):
            await chaos.redis_cli(redis.port, "CONFIG", "SET", "maxmemory", "1")
            async with run_cli(
                "echo",
                "--subprotocol",
                "trio-ws-demo.v1",
                "--timeout",
                "2",
                f"{base}/full",
                "hi",
                merged=True,
            ) as echo:
                code = await echo.process.wait()
                out = "\n".join(await echo.rest())
    assert code == 1
    assert "not delivered: Redis said OOM command not allowed" in out


async def test_a_server_starts_while_redis_refuses_writes(redis: RedisServer) -> None:
    """At maxmemory, a second server still starts: the functions are loaded already."""
    with trio.fail_after(TIMEOUT):
        async with serve(redis.url):
            await chaos.redis_cli(redis.port, "CONFIG", "SET", "maxmemory", "1")
            async with serve(redis.url) as (_, base), connect(f"{base}/x", proxy=None) as ws:
                await ws.send("still refused, but the server is up")


async def test_a_redis_restart_starts_new_epochs_and_says_so() -> None:
    figures = await run(chaos.restart_redis)
    assert clean(figures) == (0, 0, 0, 0)


async def test_maxmemory_refuses_messages_without_splitting_them() -> None:
    """Row 6 in a campaign: refused messages are in no one's stream and reach no
    one; everything accepted reaches everyone."""
    figures = await run(chaos.maxmemory)
    assert clean(figures) == (0, 0, 0, 0)
    assert figures.accepted < figures.published  # some were refused
    assert figures.local == 0  # and no one got those
