"""The README's tour and its signed-token example, run as written; the README's length; the links.

A README that shows a command with its output makes a promise a reader can check in a minute,
and it goes stale silently when the output changes. So the blocks marked ``<!-- tour: ROLE -->``
and ``<!-- token: ROLE -->`` are run here as a reader would run them: each block's ``$``
commands are one bash script in a terminal of its own (a pty, so curl and our client behave as
they do on a screen, and what they print arrives in the order a screen shows it), after
``. .venv/bin/activate`` (the test's interpreter's directory first on ``PATH``). The one change
is the port: 8080 becomes a free one, in the commands and in the output. What the terminal
shows must be the block's output lines, one for one: an ``epoch`` may be any hex (it is random),
and text after two spaces and ``#`` is a note to the reader. A ``^C`` line is Ctrl-C: SIGINT to
that terminal's process group.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from trio.lowlevel import FdStream

from .conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CTRL_C = "^C"

needed = [tool for tool in ("bash", "curl", "openssl") if shutil.which(tool) is None]
if needed:  # under CI this skip is a failure (conftest.py): .ci/run installs them
    pytest.skip(f"the README's examples need {', '.join(needed)}", allow_module_level=True)


@dataclass
class Block:
    """One marked ``console`` block: its commands, and the lines a terminal shows for them."""

    commands: list[str]
    shown: list[str]

    def script(self, port: int) -> str:
        return "\n".join(command.replace("8080", str(port)) for command in self.commands)

    def expected(self, port: int) -> list[str]:
        return [line.replace("8080", str(port)) for line in self.shown]


def marked_blocks(text: str, name: str) -> dict[str, Block]:
    """The ``console`` blocks after ``<!-- NAME: ROLE -->`` comments, by role."""
    found = {}
    pattern = rf"<!-- {name}: (\w+) -->\n```console\n(.*?)\n```"
    for role, body in re.findall(pattern, text, flags=re.DOTALL):
        lines = body.split("\n")
        commands = [line[2:] for line in lines if line.startswith("$ ")]
        shown = [re.sub(r"\s{2,}# .*$", "", line) for line in lines if not line.startswith("$ ")]
        found[role] = Block(commands, shown)
    return found


def line_pattern(line: str) -> str:
    """A shown line as a regex: literal, except that an epoch is any hex."""
    return re.sub(
        r'"epoch": "[0-9a-f]+"', '"epoch": "[0-9a-f]+"', re.escape(line).replace(r"\ ", " ")
    )


def assert_shows(actual: list[str], expected: list[str]) -> None:
    """*actual* is *expected* line for line (with :func:`line_pattern`'s freedom)."""
    wanted = [line for line in expected if line != CTRL_C]
    assert len(actual) == len(wanted), (actual, wanted)
    for seen, shown in zip(actual, wanted, strict=True):
        assert re.fullmatch(line_pattern(shown), seen), (seen, shown)


def activated_env() -> dict[str, str]:
    """This environment as after ``. .venv/bin/activate``, without any ``TRIO_WS_DEMO_*``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRIO_WS_DEMO_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


class Terminal:
    """A bash script on a pty of its own and in a process group of its own, as in a terminal
    window: its output is collected line by line as it arrives."""

    def __init__(self, process: trio.Process, screen: FdStream) -> None:
        self.process = process
        self._screen = screen
        self.lines: list[str] = []
        self._changed = trio.Event()
        self._closed = False

    @classmethod
    async def open(cls, nursery: trio.Nursery, script: str, cwd: Path) -> Terminal:
        master, slave = os.openpty()
        try:
            process = await trio.lowlevel.open_process(
                ["bash", "-c", script],
                stdin=subprocess.DEVNULL,
                stdout=slave,
                stderr=slave,
                cwd=cwd,
                env=activated_env(),
                start_new_session=True,
            )
        finally:
            os.close(slave)
        terminal = cls(process, FdStream(master))
        nursery.start_soon(terminal._read)
        return terminal

    async def _read(self) -> None:
        pending = b""
        try:
            while True:
                try:
                    chunk = await self._screen.receive_some()
                except trio.BrokenResourceError:  # EIO: every writer has closed the pty
                    chunk = b""
                if not chunk:
                    break
                *complete, pending = (pending + chunk).split(b"\n")
                self.lines += [line.decode().rstrip("\r") for line in complete]
                self._wake()
            if pending.strip():
                self.lines.append(pending.decode().rstrip("\r"))  # curl ends without a newline
        finally:
            self._closed = True
            self._wake()
            await self._screen.aclose()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def shows(self, count: int) -> list[str]:
        """Wait until the screen has *count* lines; return them."""
        while len(self.lines) < count:
            assert not self._closed, f"the terminal ended showing only {self.lines!r}"
            await self._changed.wait()
        return self.lines[:count]

    async def finished(self) -> int:
        """Wait for the script's end and for all it printed; its exit status."""
        status = await self.process.wait()
        while not self._closed:
            await self._changed.wait()
        return status

    def ctrl_c(self) -> None:
        os.killpg(self.process.pid, signal.SIGINT)

    def close(self) -> None:
        if self.process.returncode is None:
            os.killpg(self.process.pid, signal.SIGKILL)


def fetch(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers["Content-Type"]


async def test_the_tour_runs_as_written(tmp_path: Path) -> None:
    """Terminal 1 serves, terminal 2 listens, terminal 3 sends and posts: each shows what the
    tour shows, and the page it names is the chat page."""
    text = README.read_text()
    tour = marked_blocks(text, "tour")
    assert sorted(tour) == ["client", "listener", "server"]
    port = free_port()
    terminals: list[Terminal] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            try:
                server = await Terminal.open(nursery, tour["server"].script(port), tmp_path)
                terminals.append(server)
                shown = tour["server"].expected(port)
                assert_shows(await server.shows(len(shown)), shown)

                (page,) = re.findall(r"Open <(http://127\.0\.0\.1:8080/\w+)>", text)
                status, kind = await trio.to_thread.run_sync(fetch, page.replace("8080", str(port)))
                assert (status, kind.split(";")[0]) == (200, "text/html")

                listener = await Terminal.open(nursery, tour["listener"].script(port), tmp_path)
                terminals.append(listener)
                heard = tour["listener"].expected(port)
                await listener.shows(1)  # "Connection opened": it is in the room

                client = await Terminal.open(nursery, tour["client"].script(port), tmp_path)
                terminals.append(client)
                assert await client.finished() == 0
                assert_shows(client.lines, tour["client"].expected(port))

                await listener.shows(heard.index(CTRL_C))
                listener.ctrl_c()
                assert await listener.finished() == 0
                assert_shows(listener.lines, heard)

                server.ctrl_c()
                assert await server.finished() == 0
            finally:
                for terminal in terminals:
                    terminal.close()


async def test_the_signed_token_example_runs_as_written(tmp_path: Path) -> None:
    """A secret in a file, the server reading it from the environment, a token minted with it:
    alice writes in chat/lobby and is closed with 1008 for writing in news."""
    example = marked_blocks(README.read_text(), "token")
    assert sorted(example) == ["client", "server"]
    port = free_port()
    terminals: list[Terminal] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            try:
                server = await Terminal.open(nursery, example["server"].script(port), tmp_path)
                terminals.append(server)
                shown = example["server"].expected(port)
                assert_shows(await server.shows(len(shown)), shown)

                client = await Terminal.open(nursery, example["client"].script(port), tmp_path)
                terminals.append(client)
                assert await client.finished() == 1  # the last command's: 1008 is a failure
                assert_shows(client.lines, example["client"].expected(port))

                server.ctrl_c()
                assert await server.finished() == 0
            finally:
                for terminal in terminals:
                    terminal.close()


def test_the_readme_stays_a_guide() -> None:
    """At most 300 lines: the reference lives in docs/."""
    lines = README.read_text().count("\n")
    assert lines <= 300, f"README.md has {lines} lines; move reference text into docs/"


def heading_anchors(path: Path) -> set[str]:
    """The anchors GitHub makes for a Markdown file's headings."""
    anchors = set()
    in_code = False
    for line in path.read_text().split("\n"):
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (match := re.match(r"#+ (.*)", line)):
            anchors.add(re.sub(r"[^\w\- ]", "", match[1].lower()).replace(" ", "-"))
    return anchors


def relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    return [link for link in links if not re.match(r"[a-z]+:", link)]


def test_every_relative_link_in_the_readme_and_docs_resolves() -> None:
    """Each link to a file names one that exists, and each #anchor a heading in it."""
    pages = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "tests" / "README.md"]
    broken = []
    for page in pages:
        for link in relative_links(page):
            target, _, anchor = link.partition("#")
            resolved = (page.parent / target).resolve() if target else page
            if not resolved.exists():
                broken.append(f"{page.relative_to(ROOT)}: {link} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in heading_anchors(resolved):
                broken.append(f"{page.relative_to(ROOT)}: {link} (no such heading)")
    assert not broken, "\n".join(broken)
