"""`echo -i` leaves the terminal as it found it, whichever way the session ends, and
keeps its screen right: one prompt, drawn only while a line is being read.

Each test runs, in one shell line in tmux, ``stty -a`` (the mode before), the
client, and ``stty -a`` again; the two must both show ``icanon`` and ``echo``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from websockets.trio.client import connect

from .conftest import free_port
from .processes import Process, run_cli
from .terminal import Terminal

TIMEOUT = 20
#: The two flags of `stty -a` that say whether the terminal echoes and edits lines.
MODE = "stty -a | tr ' ' '\\n' | grep -xE -- '-?(icanon|echo)' | tr '\\n' ' '; echo =MODE"
MODE_SHOWN = r"(-?icanon) (-?echo) =MODE"


@asynccontextmanager
async def session(tmp_path: Path, *flags: str) -> AsyncIterator[tuple[Terminal, Process, str]]:
    port = str(free_port())
    url = f"ws://127.0.0.1:{port}/room"
    async with run_cli("serve", "--port", port, "--history", "10") as server:
        await server.readline()
        command = (
            f"{MODE}; XDG_STATE_HOME={tmp_path / 'state'} {sys.executable} -m trio_ws_demo "
            f"echo -i {' '.join(flags)} {url}; echo EXIT=$?; {MODE}"
        )
        terminal = Terminal(command, tmp_path / "pane")
        try:
            await terminal.shows("Connection opened")
            yield terminal, server, url
        finally:
            await terminal.close()


async def _ctrl_c(terminal: Terminal, server: Process) -> None:
    terminal.keys("C-c")


async def _ctrl_d(terminal: Terminal, server: Process) -> None:
    terminal.keys("C-d")


async def _close(terminal: Terminal, server: Process) -> None:
    terminal.type("/close 4000 bye")


async def _shutdown(terminal: Terminal, server: Process) -> None:
    server.interrupt()  # the server shuts down: 1001 to everyone


async def _drop(terminal: Terminal, server: Process) -> None:
    server.process.kill()  # no close frame: an error (exit 1)


WAYS_OUT: dict[str, tuple[tuple[str, ...], Callable[[Terminal, Process], Awaitable[None]]]] = {
    "ctrl-c": ((), _ctrl_c),
    "ctrl-d": ((), _ctrl_d),
    "/close": ((), _close),
    "server shutdown": ((), _shutdown),
    "connection lost": ((), _drop),
    "--resume then /close": (("--resume",), _close),
    "--resume then ctrl-c": (("--resume",), _ctrl_c),
}


@pytest.mark.parametrize("way", list(WAYS_OUT))
async def test_every_way_out_puts_the_terminal_mode_back(tmp_path: Path, way: str) -> None:
    flags, leave = WAYS_OUT[way]
    with trio.fail_after(TIMEOUT):
        async with session(tmp_path, *flags) as (terminal, server, _):
            terminal.type("hello")
            await terminal.shows("Server sent:  hello")
            await terminal.shows("> ")
            await leave(terminal, server)
            screen = await terminal.matches(r"EXIT=\d[\s\S]*" + MODE_SHOWN)
    before, after = re.findall(MODE_SHOWN, screen)
    assert before == ("icanon", "echo")
    assert after == before, screen
    if way == "server shutdown":  # one close, one line
        assert 'Disconnected (code: 1001, reason: "server shutting down")' in screen
        assert "Connection error" not in screen
    # The shell's line starts on a clean line: no prompt left in front of it.
    assert [line for line in screen.splitlines() if "EXIT=" in line][-1].startswith("EXIT=")


async def test_the_prompt_is_drawn_once_and_an_empty_line_sends_nothing(
    tmp_path: Path,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with session(tmp_path) as (terminal, _, url):
            async with connect(url, proxy=None) as other:
                terminal.keys("Enter")  # nothing typed: nothing sent, a new prompt
                terminal.type("/foo")
                await terminal.shows("unknown command /foo")
                terminal.type("after")
                assert await other.recv() == "after"  # not "" first
                screen = await terminal.shows("Server sent:  after")
                await other.send("from someone else")
                screen = await terminal.shows("Server sent:  from someone else")
            terminal.keys("C-d")
            screen = await terminal.matches(r"EXIT=\d")
    lines = screen.splitlines()
    lines = lines[lines.index("Connection opened") :]  # the client's, not the shell's
    assert not any(line.startswith("> >") for line in lines), screen
    assert not any(line.startswith(" ") for line in lines), screen  # no leading space
    assert "Client sends: " not in lines  # the empty line was not sent
    # After the notice the prompt came back, and "after" was typed at it.
    notice = next(n for n, line in enumerate(lines) if "unknown command /foo" in line)
    assert lines[notice].startswith("! unknown command"), screen
    assert "> after" in lines[notice + 1 :], screen


async def test_ctrl_z_gives_the_shell_its_mode_and_fg_comes_back_to_the_line(
    tmp_path: Path,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            session(tmp_path) as (terminal, _, url),
            connect(url, proxy=None) as other,
        ):
            terminal.type_only("half")
            await terminal.shows("half")
            terminal.keys("C-z")  # stopped: the shell runs the rest of its line
            screen = await terminal.matches(r"EXIT=\d+[\s\S]*" + MODE_SHOWN)
            before, stopped = re.findall(MODE_SHOWN, screen)
            assert stopped == before == ("icanon", "echo"), screen
            terminal.type("fg")
            await terminal.shows("> half")  # the line being typed, drawn again
            terminal.type(" done")
            assert await other.recv() == "half done"


async def test_a_line_wider_than_the_terminal_stays_one_line_when_a_message_arrives(
    tmp_path: Path,
) -> None:
    typed = "x" * 60 + "日本" * 15 + "END"  # 123 columns: wider than the terminal's 80
    with trio.fail_after(TIMEOUT):
        async with (
            session(tmp_path) as (terminal, _, url),
            connect(url, proxy=None) as other,
        ):
            terminal.type_only(typed)
            await terminal.shows("END")
            await other.send("from someone else")
            await terminal.shows("Server sent:  from someone else")
            terminal.type(" more")
            assert await other.recv() == "from someone else"
            assert await other.recv() == typed + " more"  # the line was kept whole
            await terminal.shows(typed[-20:] + " more")
            screen = terminal.screen()
    lines = screen.splitlines()
    message = lines.index("Server sent:  from someone else")
    # Nothing of the line being typed is left above the message (it was drawn on one
    # row, scrolled sideways, and that row was cleared); it is whole below.
    assert not any("xxxxxxxxxx" in line for line in lines[:message]), screen
    assert any("xxxxxxxxxx" in line for line in lines[message:]), screen
