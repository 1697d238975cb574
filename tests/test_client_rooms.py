"""The client with rooms: --json envelopes and --resume after the server goes away."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import jwt
import trio
import trio.testing
from websockets.trio.client import connect

from trio_ws_demo import AccessPolicy, BroadcastServer, ServerOptions, run_client
from trio_ws_demo.client import Event, Opened, Received, Reconnecting, Resumed

from .conftest import StartServer, url_of
from .processes import run_cli
from .rigs import Cable

TIMEOUT = 15


async def test_echo_json_prints_one_event_per_line(start_server: StartServer) -> None:
    server = await start_server(ServerOptions(history=5))
    with trio.fail_after(TIMEOUT):
        async with connect(url_of(server, "/ops"), proxy=None) as ws:
            await ws.send("earlier")
            await ws.recv()
        url = url_of(server, "/ops")
        async with run_cli("echo", "--json", url, "hello") as echo:
            lines = await echo.rest()
            assert await echo.process.wait() == 0
    events = [json.loads(line) for line in lines]  # every stdout line is JSON
    # The greeting first (it says the server speaks v1), then the send as a
    # publish: its echo is the message at the offset the ack names.
    assert [e["event"] for e in events] == [
        "opened", "joined", "sent", "message", "message", "ack", "closed",
    ]  # fmt: skip
    opened, joined, sent, earlier, hello, ack, closed = events
    assert opened["subprotocol"] == "trio-ws-demo.v1"
    assert sent == {"event": "sent", "text": "hello"}
    assert joined["room"] == "ops" and joined["history"] == 1
    assert [(m["room"], m["offset"], m["text"]) for m in (earlier, hello)] == [
        ("ops", 1, "earlier"),
        ("ops", 2, "hello"),
    ]
    assert str(hello["from"]).startswith("guest-") and earlier["from"] != hello["from"]
    assert (ack["offset"], ack["epoch"]) == (2, joined["epoch"])
    assert closed == {"event": "closed", "code": 1000, "reason": None, "by": "client"}


async def test_resume_without_listen_is_a_usage_error() -> None:
    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", "--resume", "ws://127.0.0.1:9") as echo:
            assert await echo.process.wait() == 2
            assert "--resume needs --listen or -i" in await echo.stderr()


class Events:
    def __init__(self) -> None:
        self.seen: list[Event] = []
        self._changed = trio.Event()

    def report(self, event: Event) -> None:
        self.seen.append(event)
        self._changed.set()
        self._changed = trio.Event()

    async def until(self, check: Callable[[list[Event]], bool]) -> None:
        while not check(self.seen):
            await self._changed.wait()


def texts(events: list[Event]) -> list[str]:
    out = []
    for event in events:
        if isinstance(event, Received) and isinstance(event.message, str):
            data = json.loads(event.message)
            if data.get("type") == "message":
                out.append(data["text"])
    return out


async def test_resume_gets_what_was_missed_while_the_connection_was_down(
    start_server: StartServer,
) -> None:
    server = await start_server(ServerOptions(history=50))
    cable = Cable(server.port or 0)
    events = Events()
    stop = trio.Event()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            relay_port = await nursery.start(cable.serve)
            nursery.start_soon(
                lambda: run_client(
                    f"ws://127.0.0.1:{relay_port}/chat",
                    ["first"],
                    listen=True,
                    resume=True,
                    on_event=events.report,
                    stop=stop,
                )
            )
            await events.until(lambda seen: texts(seen) == ["first"])
            cable.cut()
            await events.until(lambda seen: any(isinstance(e, Reconnecting) for e in seen))
            async with connect(url_of(server, "/chat"), proxy=None) as other:
                assert await other.recv() == "first"  # the room's history
                for word in ("while", "you", "were", "away"):
                    await other.send(word)
                    assert await other.recv() == word  # published while our client is away
                assert server.clients == 1  # ... and it is held off by the cut cable
                cable.restore()
                await events.until(lambda seen: any(isinstance(e, Resumed) for e in seen))
                await events.until(lambda seen: len(texts(seen)) >= 5)
                # Published before it was back: these came in the resume replay.
                after_resume = events.seen[
                    next(i for i, e in enumerate(events.seen) if isinstance(e, Resumed)) :
                ]
                assert texts(after_resume) == ["while", "you", "were", "away"]
                await other.send("and now")
                await events.until(lambda seen: texts(seen)[-1:] == ["and now"])
            stop.set()
            await events.until(lambda seen: sum(isinstance(e, Opened) for e in seen) == 2)
            nursery.cancel_scope.cancel()
    resumed = [e for e in events.seen if isinstance(e, Resumed)]
    assert resumed == [Resumed(recovered=True, missing=None)]
    assert texts(events.seen) == ["first", "while", "you", "were", "away", "and now"]


async def test_after_a_server_restart_the_client_says_messages_may_be_missing() -> None:
    events = Events()
    stop = trio.Event()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            first = BroadcastServer(ServerOptions(history=10))
            scope = trio.CancelScope()

            async def run_first(task_status: trio.TaskStatus[int]) -> None:
                with scope:
                    await first.run("127.0.0.1", 0, task_status=task_status)

            port = await nursery.start(run_first)
            nursery.start_soon(
                lambda: run_client(
                    f"ws://127.0.0.1:{port}/news",
                    ["before"],
                    listen=True,
                    resume=True,
                    on_event=events.report,
                    stop=stop,
                )
            )
            await events.until(lambda seen: texts(seen) == ["before"])
            scope.cancel()  # the server goes away (1001), its history with it
            await events.until(lambda seen: any(isinstance(e, Reconnecting) for e in seen))
            second = BroadcastServer(ServerOptions(history=10))
            await nursery.start(second.run, "127.0.0.1", port)
            await events.until(lambda seen: any(isinstance(e, Resumed) for e in seen))
            stop.set()
            await events.until(lambda seen: sum(isinstance(e, Opened) for e in seen) == 2)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    resumed = [e for e in events.seen if isinstance(e, Resumed)]
    assert resumed == [Resumed(recovered=False, missing=None)]


async def test_a_history_copy_of_the_same_text_is_never_taken_for_the_echo(
    start_server: StartServer,
) -> None:
    """A monitor running ``echo URL ping`` passed for ever once ``ping`` was in
    the history, although its own message reached nobody. Now the echo is the
    message at the offset its ack names."""
    key = "m" * 32
    server = await start_server(ServerOptions(history=5, access=AccessPolicy(jwt_secret=key)))
    claims = {"exp": int(time.time() + 60)}
    writer = jwt.encode({**claims, "rooms": {"probe": "rw"}}, key, algorithm="HS256")
    reader = jwt.encode({**claims, "rooms": {"probe": "r"}}, key, algorithm="HS256")
    with trio.fail_after(TIMEOUT):
        async with connect(url_of(server, f"/probe?token={writer}"), proxy=None) as ws:
            await ws.send("ping")
            assert await ws.recv() == "ping"  # in the history now
        async with run_cli("echo", "--token", reader, url_of(server, "/probe"), "ping") as echo:
            lines = await echo.rest()
            status = await echo.process.wait()
    assert status != 0, lines  # its own ping reached nobody (no write right)
    assert "Server sent:  ping" not in lines
