"""Line editing for ``echo -i`` on a terminal, read by trio itself (no thread).

Why not readline: ``input()`` blocks, so it ran in a thread that was abandoned
whenever the session ended another way than Enter (Ctrl-C, a server close,
``/close`` with ``--resume``); readline never left its raw mode and the shell
was left without echo (only ``stty sane`` repaired it), and its prompt, drawn
from that thread, raced with the lines printed above it (``> >``, a prompt lost
or drawn in the middle of a history replay). Here :class:`LineEditor` puts the
terminal in cbreak mode (no echo, no line buffering; Ctrl-C still signals) when
the session starts and puts back the mode it found in a ``finally``, whatever
ends the session; keys are read in trio's thread, which also draws the prompt,
so the prompt is on the screen exactly when a line is being read.

It gives what wscat users expect: editing keys (Left/Right, Home/End, Ctrl-A,
Ctrl-E, Ctrl-U, Ctrl-K, Ctrl-W, Backspace, Delete), Up/Down through the
history, Ctrl-R to search it. History is kept between runs in
``$XDG_STATE_HOME/trio-ws-demo/history`` (``~/.local/state/...``), one line
each, as readline kept it. A message that arrives while a line is typed is
printed above it (:meth:`LineEditor.print_above`) and the line stays intact.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import signal
import sys
import termios
import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TextIO

import trio

__all__ = ["PROMPT", "LineEditor", "history_path"]

PROMPT = "> "
#: Lines kept in the history file.
HISTORY_LENGTH = 1000
_HISTORY_MAGIC = "_HiStOrY_V2_"  # libedit's first line, if it wrote the file

#: Escape sequences of the keys we know (CSI and SS3 forms both).
_KEYS = {
    "\x1b[A": "up", "\x1bOA": "up", "\x1b[B": "down", "\x1bOB": "down",
    "\x1b[C": "right", "\x1bOC": "right", "\x1b[D": "left", "\x1bOD": "left",
    "\x1b[H": "home", "\x1bOH": "home", "\x1b[1~": "home", "\x1b[7~": "home",
    "\x1b[F": "end", "\x1bOF": "end", "\x1b[4~": "end", "\x1b[8~": "end",
    "\x1b[3~": "delete",
}  # fmt: skip


def history_path() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(state) / "trio-ws-demo" / "history"


class LineEditor:
    """Reads typed lines from a terminal; prints other lines without breaking the one typed."""

    def __init__(self, fd: int, history: Path, out: TextIO) -> None:
        self._fd = fd
        self._history_file = history
        self._out = out
        self._history: list[str] = []
        with contextlib.suppress(OSError, UnicodeDecodeError):  # none yet: start afresh
            kept = history.read_text("utf-8").splitlines()
            self._history = [line for line in kept if line and line != _HISTORY_MAGIC]
        self._buffer = ""
        self._cursor = 0
        self._search: str | None = None  # the Ctrl-R query, while searching
        self._found = -1  # where in the history the search stands
        self.reading = False
        """The prompt and the line being typed are on the screen."""
        self._saved: list[Any] = []  # the terminal's mode, as found
        self._pending = ""  # keys read but not handled yet
        self._incomplete = False  # they end with an escape sequence cut in two
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    @classmethod
    def for_terminal(cls, out: TextIO = sys.stdout) -> LineEditor | None:
        """An editor when stdin and stdout are a terminal, else None."""
        if not (sys.stdin.isatty() and out.isatty()):
            return None
        return cls(sys.stdin.fileno(), history_path(), out)

    @contextlib.asynccontextmanager
    async def terminal(self) -> AsyncIterator[None]:
        """Cbreak mode for the session; the terminal's own mode is put back on the
        way out, however the session ends, and the prompt is cleared. Ctrl-Z
        puts it back too while the client is stopped (the shell needs it)."""
        self._saved = termios.tcgetattr(self._fd)
        self._enter()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._stop_on_ctrl_z)
                try:
                    yield
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            self._leave()

    def _enter(self) -> None:
        mode = termios.tcgetattr(self._fd)
        mode[3] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN)  # ISIG kept: Ctrl-C
        mode[6] = list(mode[6])
        mode[6][termios.VMIN] = 1
        mode[6][termios.VTIME] = 0
        termios.tcsetattr(self._fd, termios.TCSANOW, mode)

    def _leave(self) -> bool:
        """The terminal as found, the prompt cleared; whether a line was being read."""
        reading, self.reading = self.reading, False  # what follows prints plainly
        with contextlib.suppress(OSError):
            if reading:
                self._write("\r\x1b[K")  # the shell starts on a clean line
        termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
        return reading

    async def _stop_on_ctrl_z(self) -> None:
        with trio.open_signal_receiver(signal.SIGTSTP) as signals:
            async for _ in signals:
                reading = self._leave()
                os.kill(os.getpid(), signal.SIGSTOP)  # returns after fg (SIGCONT)
                self._enter()
                if reading:
                    self.reading = True
                    self._redraw()

    async def read(self) -> str | None:
        """One typed line, never empty (None at end of input: Ctrl-D on an empty line);
        kept in the history file."""
        self._buffer, self._cursor, self._search = "", 0, None
        browsing = len(self._history)  # Up/Down: where in the history
        self.reading = True
        self._redraw()
        while True:
            text = self._pending
            if not text or self._incomplete:  # else keys typed ahead are waiting
                await trio.lowlevel.wait_readable(self._fd)
                data = os.read(self._fd, 4096)
                if not data:
                    return None
                text += self._decoder.decode(data)
            self._pending, self._incomplete = "", False
            index = 0
            while index < len(text):
                key, index = self._next_key(text, index)
                if key is None:  # an escape sequence not complete yet
                    self._pending, self._incomplete = text[index:], True
                    break
                if self._search is not None:
                    done = self._search_key(key)
                    if done is None:
                        continue
                    browsing = len(self._history)  # left: the key is handled below
                if key in ("\r", "\n"):
                    line = self._buffer
                    self._write("\r\x1b[K" + PROMPT + line + "\r\n")
                    self.reading = False
                    if not line.strip():
                        self.reading = True  # an empty line sends nothing: a new prompt
                        self._buffer, self._cursor = "", 0
                        self._redraw()
                        continue
                    self._remember(line)
                    self._pending = text[index:]  # typed ahead: for the next line
                    return line
                if key == "\x04":  # Ctrl-D
                    if not self._buffer:
                        self._write("\r\x1b[K")
                        self.reading = False
                        return None
                    key = "delete"
                if key == "up" and browsing > 0:
                    browsing -= 1
                    self._set(self._history[browsing])
                elif key == "down" and browsing < len(self._history):
                    browsing += 1
                    at_end = browsing == len(self._history)
                    self._set("" if at_end else self._history[browsing])
                elif key == "\x12":  # Ctrl-R
                    self._search, self._found = "", len(self._history)
                else:
                    self._edit(key)
                self._redraw()

    def print_above(self, text: str, stream: TextIO) -> None:
        """Print *text* (a whole line) above the prompt and the line being typed."""
        if not self.reading:
            stream.write(text + "\n")
            stream.flush()
            return
        self._write("\r\x1b[K")  # the prompt line, cleared
        stream.write(text + "\n")
        stream.flush()
        self._redraw()  # and drawn again below

    # Keys and edits.

    def _next_key(self, text: str, index: int) -> tuple[str | None, int]:
        if text[index] != "\x1b":
            return text[index], index + 1
        if index + 1 >= len(text):
            return None, index
        if text[index + 1] not in "[O":
            return "\x1b", index + 1  # a lone Escape
        end = index + 2
        if text[index + 1] == "[":
            while end < len(text) and text[end] in "0123456789;?":
                end += 1  # the parameters; the final letter or ~ follows
        if end >= len(text):
            return None, index
        sequence = text[index : end + 1]
        return _KEYS.get(sequence, ""), end + 1

    def _set(self, line: str) -> None:
        self._buffer, self._cursor = line, len(line)

    def _edit(self, key: str) -> None:
        buffer, cursor = self._buffer, self._cursor
        if key in ("\x7f", "\x08"):  # Backspace
            if cursor:
                buffer, cursor = buffer[: cursor - 1] + buffer[cursor:], cursor - 1
        elif key == "delete":
            buffer = buffer[:cursor] + buffer[cursor + 1 :]
        elif key in ("left", "\x02"):
            cursor = max(0, cursor - 1)
        elif key in ("right", "\x06"):
            cursor = min(len(buffer), cursor + 1)
        elif key in ("home", "\x01"):
            cursor = 0
        elif key in ("end", "\x05"):
            cursor = len(buffer)
        elif key == "\x15":  # Ctrl-U
            buffer, cursor = buffer[cursor:], 0
        elif key == "\x0b":  # Ctrl-K
            buffer = buffer[:cursor]
        elif key == "\x17":  # Ctrl-W: the word before the cursor
            start = len(buffer[:cursor].rstrip())
            start = buffer.rfind(" ", 0, start) + 1
            buffer, cursor = buffer[:start] + buffer[cursor:], start
        elif len(key) == 1 and key.isprintable():
            buffer, cursor = buffer[:cursor] + key + buffer[cursor:], cursor + 1
        self._buffer, self._cursor = buffer, cursor

    def _search_key(self, key: str) -> bool | None:
        """A key in Ctrl-R's search: None when the search goes on, False when it is
        left (the line found is kept and *key* is handled as usual)."""
        assert self._search is not None
        if key == "\x12":  # again: an older match
            self._find(self._search, self._found - 1)
        elif key in ("\x7f", "\x08"):
            self._search = self._search[:-1]
            self._find(self._search, len(self._history) - 1)
        elif key in ("\x07", "\x1b"):  # Ctrl-G, Escape: back to the line as it was
            self._search = None
            self._buffer, self._cursor = "", 0
            self._redraw()
            return None
        elif len(key) == 1 and key.isprintable():
            self._search += key
            self._find(self._search, self._found)
        else:
            self._search = None
            return False
        self._redraw()
        return None

    def _find(self, query: str, start: int) -> None:
        for index in range(min(start, len(self._history) - 1), -1, -1):
            if query in self._history[index]:
                self._found = index
                self._set(self._history[index])
                return

    # The screen.

    def _redraw(self) -> None:
        prompt = PROMPT if self._search is None else f"(reverse-i-search)'{self._search}': "
        try:
            width = os.get_terminal_size(self._out.fileno()).columns
        except (OSError, ValueError):
            width = 80
        room = max(8, width - _columns(prompt) - 1)  # one line, scrolled sideways
        buffer, cursor = self._buffer, self._cursor
        start, used = cursor, 0
        while start > 0 and used + _columns(buffer[start - 1]) <= room:
            start -= 1
            used += _columns(buffer[start])
        end = cursor
        while end < len(buffer) and used + _columns(buffer[end]) <= room:
            used += _columns(buffer[end])
            end += 1
        back = _columns(buffer[cursor:end])
        self._write(
            "\r" + prompt + buffer[start:end] + "\x1b[K" + (f"\x1b[{back}D" if back else "")
        )

    def _write(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()

    def _remember(self, line: str) -> None:
        if not self._history or self._history[-1] != line:
            self._history.append(line)
        del self._history[:-HISTORY_LENGTH]
        with contextlib.suppress(OSError):  # a history that cannot be kept is no error
            self._history_file.parent.mkdir(parents=True, exist_ok=True)
            self._history_file.write_text("\n".join(self._history) + "\n", "utf-8")


def _columns(text: str) -> int:
    """How many terminal columns *text* takes: 2 for wide letters (CJK, most emoji),
    0 for combining marks, 1 for the rest."""
    return sum(
        2
        if unicodedata.east_asian_width(ch) in "WF"
        else 0
        if unicodedata.category(ch) in ("Mn", "Me", "Cf")
        else 1
        for ch in text
    )
