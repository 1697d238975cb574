"""Scale-out through Redis: a real redis-server, real server processes, real clients.

Each test starts its own redis-server on a free port (see ``redis_server.py``)
and kills, freezes or restarts it where the outage behaviour is the point.
"""

from __future__ import annotations

import json
import logging
import signal
from functools import partial

import pytest
import trio
from websockets.exceptions import ConnectionClosed
from websockets.trio.client import connect

from trio_ws_demo import ServerOptions

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
from .redis_server import RedisServer, free_port, require_redis
from .wsraw import http_exchange

TIMEOUT = 20
# -- two processes, one Redis ----------------------------------------------------


async def test_a_message_crosses_processes_and_stays_in_its_room(redis: RedisServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            serve(redis.url) as (_, a),
            serve(redis.url) as (_, b),
            connect(f"{b}/ops", proxy=None) as ops,
            connect(f"{b}/dev", proxy=None) as dev,
            connect(f"{a}/ops", proxy=None) as sender,
            connect(f"{a}/dev", proxy=None) as dev_sender,
        ):
            await sender.send("disk 91% full")
            assert await ops.recv() == "disk 91% full"
            await dev_sender.send("for dev")
            assert await dev.recv() == "for dev"  # the first thing /dev saw


async def test_every_process_sees_one_order_per_room(redis: RedisServer) -> None:
    per_publisher = 40
    with trio.fail_after(TIMEOUT):
        async with (
            serve(redis.url) as (_, a),
            serve(redis.url) as (_, b),
            connect(f"{a}/race", subprotocols=V1, proxy=None) as on_a,  # type: ignore[list-item]
            connect(f"{b}/race", subprotocols=V1, proxy=None) as on_b,  # type: ignore[list-item]
        ):
            go = trio.Event()

            async def publish(base: str, name: str, *, task_status: trio.TaskStatus[None]) -> None:
                async with connect(f"{base}/race", proxy=None) as ws:
                    # Every publisher is in the room before anyone publishes,
                    # or it would miss what others sent before it joined.
                    task_status.started()
                    await go.wait()
                    for i in range(per_publisher):
                        await ws.send(f"{name}-{i}")
                    for _ in range(6 * per_publisher):  # stay until all is delivered
                        await ws.recv()

            async with trio.open_nursery() as nursery:
                for name, base in [
                    ("a1", a),
                    ("a2", a),
                    ("a3", a),
                    ("b1", b),
                    ("b2", b),
                    ("b3", b),
                ]:
                    await nursery.start(partial(publish, base, name))
                go.set()
                seen_a = await frames(on_a, 6 * per_publisher)
                seen_b = await frames(on_b, 6 * per_publisher)
    order_a = [(f["offset"], f["text"]) for f in seen_a]
    order_b = [(f["offset"], f["text"]) for f in seen_b]
    assert order_a == order_b
    assert [offset for offset, _ in order_a] == list(range(1, 6 * per_publisher + 1))
    texts = [text for _, text in order_a]
    for name in ["a1", "a2", "a3", "b1", "b2", "b3"]:  # each sender's own order kept
        assert [t for t in texts if str(t).startswith(f"{name}-")] == [
            f"{name}-{i}" for i in range(per_publisher)
        ]


async def test_a_client_resumes_on_another_process_after_its_own_died(
    redis: RedisServer,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            serve(redis.url, "--history", "100") as (_, b),
            connect(f"{b}/r", proxy=None) as publisher,
        ):
            async with (
                serve(redis.url, "--history", "100") as (doomed, a),
                connect(f"{a}/r", subprotocols=V1, proxy=None) as client,  # type: ignore[list-item]
            ):
                await until_frame(client, "joined")
                for text in ["m1", "m2", "m3"]:
                    await publisher.send(text)
                # A new room's first message starts its stream, and its epoch:
                # clients are told, and nothing was missed.
                born = await until_frame(client, "backplane")
                seen = await frames(client, 3)
                doomed.process.kill()  # the process dies; its client is cut off
                await doomed.process.wait()
            for text in ["m4", "m5", "m6"]:
                await publisher.send(text)
            for _ in range(6):
                await publisher.recv()  # all six are in Redis by now
            last = seen[-1]["offset"]
            resume = f"{b}/r?since={last}&epoch={born['epoch']}"
            async with connect(resume, subprotocols=V1, proxy=None) as again:  # type: ignore[list-item]
                first = json.loads(await again.recv())
                missed = await frames(again, 3)
    assert [f["text"] for f in seen] == ["m1", "m2", "m3"]
    assert born["up"] is True and born["recovered"] is True and born["offset"] == 0
    assert first["type"] == "resume" and first["recovered"] is True
    assert first["epoch"] == born["epoch"]
    assert [(f["offset"], f["text"]) for f in missed] == [(4, "m4"), (5, "m5"), (6, "m6")]


# -- outages ---------------------------------------------------------------------


async def test_a_redis_restart_keeps_clients_and_loses_nothing_locally(
    redis: RedisServer, start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_ws_demo.backplane")
    options = ServerOptions(redis=redis.url)
    a = await start_server(options)
    b = await start_server(options)
    with trio.fail_after(TIMEOUT):
        async with (
            connect(url_of(a, "/x"), subprotocols=V1, proxy=None) as watcher,  # type: ignore[list-item]
            connect(url_of(a, "/x"), proxy=None) as talker,
            connect(url_of(b, "/x"), subprotocols=V1, proxy=None) as far,  # type: ignore[list-item]
        ):
            assert (await healthz(a.port))[0] == 200
            await redis.kill()
            down = await until_frame(watcher, "backplane")
            assert down["up"] is False
            status, health = await healthz(a.port)
            assert (status, health["backplane"]) == (503, "down")
            assert "trio_ws_demo_backplane_up 0.0" in await metrics(a.port)
            await talker.send("during the outage")  # still delivered on this process
            assert await talker.recv() == "during the outage"
            (local,) = await frames(watcher, 1)
            assert local["text"] == "during the outage"
            await redis.start()
            up = await until_frame(watcher, "backplane")
            assert up["up"] is True
            # B hears of the outage and the return, and never A's outage message.
            assert (await next_frame_but_no_message(far, "backplane"))["up"] is False
            assert (await next_frame_but_no_message(far, "backplane"))["up"] is True
            assert (await healthz(a.port))[0] == 200
            scraped = await metrics(a.port)
            assert "trio_ws_demo_backplane_up 1.0" in scraped
            assert "trio_ws_demo_backplane_reconnects_total 1.0" in scraped
            await far.send("after")  # across processes again
            (after,) = await frames(watcher, 1)
            assert after["text"] == "after"
            (after_on_b,) = await frames(far, 1)  # the first message B ever got
            assert after_on_b["text"] == "after"
    assert a.statistics().backplane is not None
    assert a.statistics().backplane.reconnects == 1  # type: ignore[union-attr]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "lost" in r.message]
    backs = [r for r in caplog.records if "is back" in r.message]
    assert len(warnings) == 2 and len(backs) == 2  # one of each per server


async def test_a_frozen_redis_never_blocks_the_server(
    redis: RedisServer, start_server: StartServer
) -> None:
    server = await start_server(ServerOptions(redis=redis.url, redis_queue=50))
    with trio.fail_after(TIMEOUT):
        async with connect(url_of(server, "/f"), subprotocols=V1, proxy=None) as ws:  # type: ignore[list-item]
            await until_frame(ws, "joined")
            redis.freeze()
            for i in range(200):
                await ws.send(f"m{i}")
            # The event loop still answers at once while every XADD waits on Redis
            # (200 or 503: whether the link was already judged lost is not the point).
            with trio.fail_after(1):
                status, _ = await healthz(server.port)
            assert status in (200, 503)
            down = await until_frame(ws, "backplane")
            assert down["up"] is False
            stats = server.statistics().backplane
            assert stats is not None and 100 <= stats.dropped < 200  # about 50 fit the queue
            kept = 200 - stats.dropped
            delivered = await frames(ws, kept)  # those that fit, here, once, in order
            assert [f["text"] for f in delivered] == [f"m{i}" for i in range(kept)]
            redis.thaw()
            up = await next_frame_but_no_message(ws, "backplane")  # none of them twice
            assert up["up"] is True
            await ws.send("after the thaw")
            (after,) = await frames(ws, 1)
            assert after["text"] == "after the thaw"  # and none of them later either


async def test_the_redis_queue_flag_bounds_what_waits_for_a_frozen_redis(
    redis: RedisServer,
) -> None:
    """--redis-queue reaches the server: with Redis frozen, about that many wait
    and the rest are dropped and counted (the default, 10,000, would drop none)."""
    with trio.fail_after(TIMEOUT):
        async with (
            serve(redis.url, "--redis-queue", "50", "--log-level", "warning") as (_, base),
            connect(f"{base}/f", subprotocols=V1, proxy=None) as ws,  # type: ignore[list-item]
        ):
            port = int(base.rsplit(":", 1)[1])
            await until_frame(ws, "joined")
            redis.freeze()
            for i in range(200):
                await ws.send(f"m{i}")
            await until_frame(ws, "backplane")  # down
            dropped = next(
                line
                for line in (await metrics(port)).splitlines()
                if line.startswith("trio_ws_demo_backplane_dropped_total")
            )
            assert 100 <= float(dropped.split()[1]) < 200
            redis.thaw()
            assert (await until_frame(ws, "backplane"))["up"] is True


# -- start-up, secrets, ports ------------------------------------------------------


async def test_unreachable_redis_is_one_line_and_exit_1() -> None:
    require_redis()
    url = f"redis://127.0.0.1:{free_port()}/0"
    with trio.fail_after(TIMEOUT):
        async with run_cli("serve", "--port", "0", "--redis", url) as process:
            assert await process.process.wait() == 1
            err = await process.stderr()
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith(f"error: cannot use Redis at {url}: ")
    assert "--redis-optional" in lines[0]


async def test_redis_optional_starts_locally_and_joins_when_redis_comes(
    nursery: trio.Nursery,
) -> None:
    redis = RedisServer(nursery)
    with trio.fail_after(TIMEOUT):
        async with serve(redis.url, "--redis-optional") as (process, base):
            port = int(base.rsplit(":", 1)[1])
            status, health = await healthz(port)
            assert (status, health["backplane"]) == (503, "down")
            async with connect(f"{base}/solo", proxy=None) as ws:
                await ws.send("local")
                assert await ws.recv() == "local"
            await redis.start()
            await process.log.wait_for("backplane: connected to Redis")
            status, health = await healthz(port)
            assert (status, health["backplane"]) == (200, "up")
    await redis.kill()


async def test_the_redis_password_is_never_logged(nursery: trio.Nursery) -> None:
    redis = RedisServer(nursery, password="hunter2-redis")
    await redis.start()
    try:
        with trio.fail_after(TIMEOUT):
            async with serve(redis.url, "--log-level", "debug") as (process, base):
                async with connect(f"{base}/p", proxy=None) as ws:
                    await ws.send("hi")
                    assert await ws.recv() == "hi"
                process.interrupt()
                assert await process.process.wait() == 0
                log = await process.stderr()
            wrong = redis.url.replace("hunter2-redis", "wrong-pass")
            async with run_cli("serve", "--port", "0", "--redis", wrong) as refused:
                assert await refused.process.wait() == 1
                err = await refused.stderr()
    finally:
        await redis.kill()
    assert "connected to Redis at redis://:***@127.0.0.1:" in "\n".join(process.log.lines)
    assert "hunter2-redis" not in log and "hunter2-redis" not in "\n".join(process.log.lines)
    assert "wrong-pass" not in err and "redis://:***@" in err


async def test_reuse_port_lets_two_processes_share_a_port(redis: RedisServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with serve(redis.url, "--reuse-port") as (_, a):
            port = a.rsplit(":", 1)[1]
            async with run_cli(
                "serve", "--port", port, "--redis", redis.url, "--reuse-port"
            ) as second:
                assert (await second.readline()).startswith(f"Listening on ws://127.0.0.1:{port}")
                # Each process is its own instance (its pid), in /healthz and every log line.
                seen = set()
                with trio.fail_after(TIMEOUT):
                    while len(seen) < 2:  # the kernel spreads connections over both
                        answer = await http_exchange(
                            int(port), b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                        )
                        seen.add(json.loads(answer.partition(b"\r\n\r\n")[2])["instance"])
                assert all(name.startswith(f"127.0.0.1:{port}/") for name in seen), seen
            async with run_cli("serve", "--port", port, "--redis", redis.url) as refused:
                assert await refused.process.wait() == 1
                assert "the port is in use" in await refused.stderr()


async def test_clients_joining_a_new_room_at_once_all_hear_the_other_process(
    redis: RedisServer, start_server: StartServer
) -> None:
    """Twenty handshakes load the same new room together (one loads, the others
    wait for it); then every one of them gets a message sent on the other process."""
    a = await start_server(ServerOptions(redis=redis.url, history=10))
    b = await start_server(ServerOptions(redis=redis.url, history=10))
    got: list[str] = []
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            joined = trio.Semaphore(0)

            async def listener() -> None:
                async with connect(url_of(b, "/fresh"), proxy=None) as ws:
                    joined.release()
                    got.append(str(await ws.recv()))

            for _ in range(20):
                nursery.start_soon(listener)
            for _ in range(20):
                await joined.acquire()
            async with connect(url_of(a, "/fresh"), proxy=None) as sender:
                await sender.send("to all twenty")
                assert await sender.recv() == "to all twenty"
    assert got == ["to all twenty"] * 20
    # Loaded once, not reset: a late joiner on B gets the message exactly once, as history.
    with trio.fail_after(TIMEOUT):
        async with connect(url_of(b, "/fresh"), subprotocols=V1, proxy=None) as late:  # type: ignore[list-item]
            joined = json.loads(await late.recv())
            assert (joined["type"], joined["history"]) == ("joined", 1)
            (kept,) = await frames(late, 1)
            assert kept["text"] == "to all twenty"


async def test_a_malformed_stream_entry_is_skipped_never_fatal(
    redis: RedisServer, start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A hand-made entry with a bad time field, while the room is read and when it
    is loaded again by a new process: skipped and counted, the server serves on."""
    a = await start_server(ServerOptions(redis=redis.url, history=10))
    with trio.fail_after(TIMEOUT):
        async with connect(url_of(a, "/p"), subprotocols=V1, proxy=None) as ws:  # type: ignore[list-item]
            await until_frame(ws, "joined")
            await ws.send("before")
            born = await until_frame(ws, "backplane")  # the first message starts the stream
            (before,) = await frames(ws, 1)
            assert before["text"] == "before"
            # In the stream's epoch (a newer one would start a new epoch of the stream).
            poison = ["redis-cli", "-p", str(redis.port), "XADD", "trio-ws-demo:room:p",
                      f"{born['epoch']}-*", "t", "not-a-time", "m", "poison"]  # fmt: skip
            await trio.run_process(poison, capture_stdout=True)
            await ws.send("after")
            (after,) = await frames(ws, 1)  # the poison never arrives; the server lives
            assert after["text"] == "after"
        assert a.statistics().backplane is not None
        assert a.statistics().backplane.skipped == 1  # type: ignore[union-attr]
        b = await start_server(ServerOptions(redis=redis.url, history=10))  # loads it anew
        async with connect(url_of(b, "/p"), subprotocols=V1, proxy=None) as late:  # type: ignore[list-item]
            joined = json.loads(await late.recv())
            assert joined["history"] == 2  # "before" and "after", not the poison
    assert any("malformed entry" in r.getMessage() for r in caplog.records)


# -- shutdown ----------------------------------------------------------------------


async def test_what_waits_for_redis_at_shutdown_reaches_every_listener(
    redis: RedisServer,
) -> None:
    """Finding R13: the backplane stopped before the clients were closed, so what
    was still queued for Redis at SIGTERM reached no one (0 of 20 here, on this
    process or the other). Now the clients are closed after it is written and
    read back: all 20 arrive on both (the sender's too), then the close 1001.
    (All at once, as SIGINT closes: a drain keeps the backplane up meanwhile,
    test_drain.py.)"""
    count = 20
    with trio.fail_after(TIMEOUT):
        async with (
            serve(redis.url, "--log-level", "info", "--drain-window", "0") as (a, base_a),
            serve(redis.url) as (_, base_b),
            connect(f"{base_a}/q", subprotocols=V1, proxy=None) as near,  # type: ignore[list-item]
            connect(f"{base_b}/q", subprotocols=V1, proxy=None) as far,  # type: ignore[list-item]
            connect(f"{base_a}/q", subprotocols=V1, proxy=None) as sender,  # type: ignore[list-item]
        ):
            for ws in (near, far, sender):
                await until_frame(ws, "joined")
            port_a = int(base_a.rsplit(":", 1)[1])
            redis.freeze()  # the messages wait in A's queue (below the 1.5 s heartbeat)
            for i in range(count):
                await sender.send(f"m{i}")
            await (await sender.ping()).wait()  # A read the messages before the ping: queued
            assert "trio_ws_demo_backplane_sent_total 0.0" in await metrics(port_a)
            a.process.send_signal(signal.SIGTERM)
            await a.log.wait_for("shutting down")
            redis.thaw()
            expected = [f"m{i}" for i in range(count)]
            for ws in (near, sender):  # what they got before their close
                seen = []
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        seen += [f["text"] for f in await frames(ws, 1)]
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
                assert seen == expected
            assert [f["text"] for f in await frames(far, count)] == expected
