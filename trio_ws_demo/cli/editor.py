"""Line editing for ``echo -i`` on a terminal, through the standard library's readline.

Why readline, not prompt_toolkit: it is in the standard library (no new
dependency), ``input()`` uses it as soon as it is imported, and it gives what
wscat users expect: editing keys, Up/Down through the history, Ctrl-R to search
it. History is kept between runs in ``$XDG_STATE_HOME/trio-ws-demo/history``
(``~/.local/state/...``). What readline does not do is keep the line being
typed intact when a message arrives; :meth:`LineEditor.print_above` does: it
clears the prompt line, prints, and draws the prompt and the partial line again.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import TextIO

__all__ = ["PROMPT", "LineEditor", "history_path"]

PROMPT = "> "
#: Lines kept in the history file.
HISTORY_LENGTH = 1000


def history_path() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(state) / "trio-ws-demo" / "history"


class LineEditor:
    """Reads typed lines with readline; prints other lines without breaking the one typed."""

    def __init__(self, readline: object, history: Path, out: TextIO) -> None:
        self._readline = readline
        self._history = history
        self._out = out
        self.reading = False

    @classmethod
    def for_terminal(cls, out: TextIO = sys.stdout) -> LineEditor | None:
        """An editor, or None where readline is missing (it is optional in Python)."""
        try:
            import readline
        except ImportError:
            return None
        history = history_path()
        with contextlib.suppress(OSError):  # no history yet, or not readable: start afresh
            readline.read_history_file(history)
        readline.set_history_length(HISTORY_LENGTH)
        return cls(readline, history, out)

    def read(self) -> str | None:
        """One typed line (None at end of input: Ctrl-D); kept in the history file."""
        self.reading = True
        try:
            line = input(PROMPT)
        except EOFError:
            return None
        finally:
            self.reading = False
        if line.strip():
            self._save()
        return line

    def print_above(self, text: str, stream: TextIO) -> None:
        """Print *text* (a whole line) above the prompt and the line being typed."""
        if not self.reading:
            stream.write(text + "\n")
            stream.flush()
            return
        typed = self._readline.get_line_buffer()  # type: ignore[attr-defined]
        self._out.write("\r\x1b[K")  # the prompt line, cleared
        self._out.flush()
        stream.write(text + "\n")
        stream.flush()
        self._out.write(PROMPT + typed)  # and drawn again below
        self._out.flush()

    def _save(self) -> None:
        with contextlib.suppress(OSError):  # a history that cannot be kept is no error
            self._history.parent.mkdir(parents=True, exist_ok=True)
            self._readline.write_history_file(self._history)  # type: ignore[attr-defined]
