"""A real terminal for the client: tmux runs ``echo --interactive``, types into it
and reads its screen (shared by the terminal tests)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import trio

if not shutil.which("tmux") and not os.environ.get("CI"):
    # Every module that drives a terminal imports this one: each is skipped.
    pytest.skip("needs tmux (apt-get install tmux; CI installs it)", allow_module_level=True)


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
