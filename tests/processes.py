"""Run ``python -m trio_ws_demo`` as a real process and read its output line by line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio.testing


class LineReader:
    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""
        self.lines: list[str] = []

    async def readline(self) -> str:
        """The next line; '' at end of output."""
        while b"\n" not in self._buffer:
            chunk = await self._stream.receive_some()
            if not chunk:
                line, self._buffer = self._buffer, b""
                return line.decode()
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        self.lines.append(line.decode())
        return line.decode()

    async def wait_for(self, text: str) -> str:
        """Read until a line contains *text*; return that line."""
        while True:
            line = await self.readline()
            if text in line:
                return line
            if line == "" and not self._buffer:
                raise AssertionError(f"{text!r} never appeared in {self.lines!r}")


class Process:
    def __init__(self, process: trio.Process) -> None:
        self.process = process
        assert process.stdout is not None
        self._out = LineReader(process.stdout)
        # With merged output (stderr=STDOUT, as a terminal shows it) there is no log.
        self.log = LineReader(process.stderr or trio.testing.MemoryReceiveStream())
        self.lines = self._out.lines

    async def readline(self) -> str:
        """The next stdout line; '' at end of output."""
        return await self._out.readline()

    async def read_until(self, wanted: str) -> list[str]:
        """Lines up to and including the first that equals *wanted*."""
        seen = []
        while True:
            line = await self.readline()
            seen.append(line)
            if line == wanted:
                return seen
            if line == "" and self.process.poll() is not None:
                raise AssertionError(f"process ended before {wanted!r}; saw {seen!r}")

    async def rest(self) -> list[str]:
        lines = []
        while (line := await self.readline()) != "":
            lines.append(line)
        return lines

    async def stdout_bytes(self) -> bytes:
        """The rest of stdout, as bytes, to its end."""
        assert self.process.stdout is not None
        data = b""
        while chunk := await self.process.stdout.receive_some():
            data += chunk
        return data

    async def stderr(self) -> str:
        """The rest of stderr (after any lines already read with ``log``)."""
        rest = []
        while (line := await self.log.readline()) != "":
            rest.append(line)
        return "".join(f"{line}\n" for line in rest)

    def interrupt(self) -> None:
        self.process.send_signal(signal.SIGINT)


@asynccontextmanager
async def run_cli(
    *args: str,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    merged: bool = False,
    typing: bool = False,
    prefix: tuple[str, ...] = (),
) -> AsyncIterator[Process]:
    """Run the CLI; with *merged*, stderr goes into stdout in order, as a terminal shows it.
    With *typing*, stdin stays open for the test to write to (``process.process.stdin``).
    *prefix* runs it through another command that execs it (``ip netns exec NS``)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    process = await trio.lowlevel.open_process(
        [*prefix, sys.executable, "-m", "trio_ws_demo", *args],
        stdin=subprocess.PIPE if stdin is not None or typing else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merged else subprocess.PIPE,
        env=env,
    )
    try:
        if stdin is not None:
            assert process.stdin is not None
            await process.stdin.send_all(stdin)
            await process.stdin.aclose()
        yield Process(process)
    finally:
        if process.poll() is None:
            process.kill()
        await process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                await stream.aclose()


async def listening_port(serve: Process) -> int:
    line = await serve.readline()
    assert line.startswith("Listening on ws://127.0.0.1:"), line
    return int(line.split()[2].rsplit(":", 1)[1])
