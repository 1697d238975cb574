"""`echo --interactive` in a real terminal: tmux runs it, types into it and reads its screen.

A message from someone else shows up while the user types nothing; a typed
line is sent; /ping answers; a server close is noticed at once. CI installs
tmux (``.ci/run``); elsewhere a missing tmux skips these tests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing
from websockets.trio.client import connect

from trio_ws_demo import BroadcastServer

from .conftest import url_of
from .terminal import Terminal

TIMEOUT = 20


async def test_messages_arrive_while_the_user_types_nothing(
    server: BroadcastServer,
    terminal_factory: Callable[[str], Terminal],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="trio_ws_demo")
    terminal = terminal_factory(url_of(server))
    with trio.fail_after(TIMEOUT):
        await terminal.shows("Connection opened")
        async with connect(url_of(server), proxy=None) as other:
            await other.send("from someone else")
            await terminal.shows("Server sent:  from someone else")
            terminal.type("typed by the user")
            assert await other.recv() == "from someone else"
            assert await other.recv() == "typed by the user"
            await terminal.shows("Server sent:  typed by the user")
            terminal.type("/ping")
            await terminal.shows("Pong after ")
            terminal.type("/binary 00ff")
            assert await other.recv() == b"\x00\xff"
            for bad in ("/close 999", "/close 1005", "/close 5000 x"):
                terminal.type(bad)  # not sendable: said here, nothing goes on the wire
                await terminal.shows(f"not a close code to send: '{bad.split()[1]}'")
            terminal.type("/close 4000 bye now")
            screen = await terminal.matches(r"EXIT=\d")  # not the typed "EXIT=$?"
            await trio.testing.wait_all_tasks_blocked()
    assert 'Disconnected (code: 4000, reason: "bye now")' in screen and "EXIT=0" in screen
    # The code and the reason reached the server.
    assert any("code 4000 'bye now'" in r.getMessage() for r in caplog.records)


async def test_a_server_close_is_noticed_at_once(
    terminal_factory: Callable[[str], Terminal],
) -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server = BroadcastServer()
            scope = trio.CancelScope()

            async def run_server(task_status: trio.TaskStatus[int]) -> None:
                with scope:
                    await server.run("127.0.0.1", 0, task_status=task_status)

            await nursery.start(run_server)
            terminal = terminal_factory(url_of(server))
            await terminal.shows("Connection opened")
            scope.cancel()  # the server shuts down: 1001 to everyone
            screen = await terminal.matches(r"EXIT=\d")  # not the typed "EXIT=$?"
    assert 'Disconnected (code: 1001, reason: "server shutting down")' in screen
    assert "EXIT=1" in screen  # a close other than 1000 is an error for scripts


async def test_a_message_arriving_mid_typing_keeps_the_typed_line(
    server: BroadcastServer, terminal_factory: Callable[..., Terminal]
) -> None:
    terminal = terminal_factory(url_of(server))
    with trio.fail_after(TIMEOUT):
        await terminal.shows("Connection opened")
        async with connect(url_of(server), proxy=None) as other:
            terminal.type_only("half typed")
            await terminal.shows("half typed")
            await other.send("arrives mid-typing")
            await terminal.shows("Server sent:  arrives mid-typing")
            screen = await terminal.shows("> half typed")  # the prompt and the line, again
            lines = screen.splitlines()
            assert "Server sent:  arrives mid-typing" in lines  # a line of its own
            assert lines.index("Server sent:  arrives mid-typing") < max(
                n for n, line in enumerate(lines) if line.startswith("> half typed")
            )
            terminal.type(" and done")  # the line goes on where it was
            assert await other.recv() == "arrives mid-typing"
            assert await other.recv() == "half typed and done"


async def test_up_ctrl_r_and_a_history_kept_between_runs(
    server: BroadcastServer, terminal_factory: Callable[..., Terminal], tmp_path: Path
) -> None:
    state = tmp_path / "kept"
    first = terminal_factory(url_of(server), state)
    with trio.fail_after(TIMEOUT):
        async with connect(url_of(server), proxy=None) as other:
            await first.shows("Connection opened")
            for line in ("alpha", "beta"):
                first.type(line)
                assert await other.recv() == line
            first.keys("Up", "Enter")  # the last line again (not "\x1b[A")
            assert await other.recv() == "beta"
            first.keys("C-r")
            first.type_only("alp")
            first.keys("Enter")  # reverse search: the line that had "alp"
            assert await other.recv() == "alpha"
            first.keys("C-d")  # end of input: close 1000
            await first.matches(r"EXIT=0")
            second = terminal_factory(url_of(server), state)  # a new run, same history
            await second.shows("Connection opened")
            second.keys("Up", "Enter")
            assert await other.recv() == "alpha"
    kept = (state / "trio-ws-demo" / "history").read_text().split()
    assert {"alpha", "beta"} <= set(kept) and kept[-1] == "alpha"


async def test_an_interactive_session_survives_a_server_restart_while_the_user_types(
    terminal_factory: Callable[..., Terminal], tmp_path: Path
) -> None:
    """echo -i --resume in a terminal: the server restarts in the middle of a line
    being typed; the line is finished and sent once it is back, nothing lost."""
    from .conftest import free_port
    from .processes import run_cli

    port = str(free_port())
    url = f"ws://127.0.0.1:{port}/r"
    with trio.fail_after(TIMEOUT):
        async with run_cli("serve", "--port", port, "--history", "10") as first:
            await first.readline()
            terminal = terminal_factory(url, None, "--resume")
            await terminal.shows("Connection opened")
            terminal.type("before")
            await terminal.shows("Server sent:  before")  # it knows the room's epoch now
            terminal.type_only("typed across")
            first.process.kill()
            await first.process.wait()
        await terminal.shows("reconnecting in")
        async with (
            run_cli("serve", "--port", port, "--history", "10") as second,
        ):
            await second.readline()
            await terminal.shows("Reconnected")
            async with connect(url, proxy=None) as other:
                terminal.type(" the restart")
                assert await other.recv() == "typed across the restart"
                await terminal.shows("Server sent:  typed across the restart")
            second.interrupt()


async def test_a_session_shows_who_sent_each_message(
    server: BroadcastServer, terminal_factory: Callable[..., Terminal]
) -> None:
    """Issue 28, item 1: the server's ``from`` beside each message (a chosen
    name; a guest's id is left out as noise)."""
    terminal = terminal_factory(url_of(server, "/?name=ann"))
    with trio.fail_after(TIMEOUT):
        await terminal.shows("Connection opened")
        async with connect(url_of(server, "/?name=bob"), proxy=None) as bob:
            await bob.send("hello ann")
            await terminal.shows("Server sent:  bob: hello ann")
            terminal.type("hi bob")
            await terminal.shows("Server sent:  ann: hi bob")
            await terminal.shows("Delivered as offset 2")  # the ack of ann's line
