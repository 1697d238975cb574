"""`echo --interactive` in a real terminal: tmux runs it, types into it and reads its screen.

A message from someone else shows up while the user types nothing; a typed
line is sent; /ping answers; a server close is noticed at once. CI installs
tmux (``.ci/run``); elsewhere a missing tmux skips these tests.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import trio
import trio.testing
from websockets.trio.client import connect

from trio_ws_demo import BroadcastServer

from .conftest import url_of

if not shutil.which("tmux") and not os.environ.get("CI"):
    pytest.skip("needs tmux (apt-get install tmux; CI installs it)", allow_module_level=True)

TIMEOUT = 20


class Terminal:
    """One tmux session running a command in an 80x24 terminal.

    What the program writes to the terminal is piped (``tmux pipe-pane``) into
    a FIFO that the test reads, so waiting for text on the screen is waiting
    for bytes, not polling.
    """

    def __init__(self, command: str, fifo: Path) -> None:
        self.name = f"trio-ws-demo-{uuid.uuid4().hex[:8]}"
        os.mkfifo(fifo)
        # O_RDWR: the read end never sees end-of-file before tmux opens it for writing.
        self._output = trio.lowlevel.FdStream(os.open(fifo, os.O_RDWR | os.O_NONBLOCK))
        self._seen = b""
        tmux = ["tmux", "new-session", "-d", "-s", self.name, "-x", "80", "-y", "24", "sh"]
        subprocess.run(tmux, check=True)
        subprocess.run(["tmux", "pipe-pane", "-t", self.name, f"cat > {fifo}"], check=True)
        self.type(command)

    def screen(self) -> str:
        done = subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True
        )
        return done.stdout

    def type(self, text: str) -> None:
        self.type_only(text)
        self.keys("Enter")

    def type_only(self, text: str) -> None:
        """Type *text*, without Enter."""
        subprocess.run(["tmux", "send-keys", "-t", self.name, "-l", text], check=True)

    def keys(self, *names: str) -> None:
        """Press keys by tmux's names: Up, Enter, C-r, ..."""
        subprocess.run(["tmux", "send-keys", "-t", self.name, *names], check=True)

    async def shows(self, text: str) -> str:
        """Wait until the program has written *text*; return the screen then."""
        return await self.matches(re.escape(text))

    async def matches(self, pattern: str) -> str:
        while not re.search(pattern.encode(), self._seen):
            self._seen += await self._output.receive_some()
        return self.screen()

    async def close(self) -> None:
        await trio.run_process(["tmux", "kill-session", "-t", self.name], check=False)
        await self._output.aclose()


@pytest.fixture
async def terminal_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Terminal]]:
    opened: list[Terminal] = []

    def start(url: str, state: Path | None = None, *flags: str) -> Terminal:
        # The shell goes on after the client exits, so its last lines stay readable.
        # The line history goes to *state* (a fresh directory per test by default).
        state = state or tmp_path / f"state{len(opened)}"
        command = (
            f"XDG_STATE_HOME={state} {sys.executable} -m trio_ws_demo echo --interactive "
            f"{' '.join(flags)} {url}; echo EXIT=$?"
        )
        terminal = Terminal(command, tmp_path / f"pane{len(opened)}")
        opened.append(terminal)
        return terminal

    yield start
    for terminal in opened:
        await terminal.close()


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
