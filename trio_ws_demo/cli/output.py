"""How the echo client's events reach the terminal (or a script).

Remote content is escaped before it is printed, so that a peer cannot move the
cursor, change colours or retitle the terminal.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from typing import TextIO

from ..client import (
    Closed,
    Event,
    Message,
    Notice,
    Opened,
    Ponged,
    Received,
    Reconnecting,
    Resumed,
    Sent,
)

__all__ = ["Printer", "escape"]

# C0 and C1 control characters and DEL, shown as escapes so that a remote peer
# cannot move the cursor, change colours or retitle the terminal.
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]}
_CONTROL.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def escape(message: Message, binary: str = "repr") -> str:
    """Make remote content safe to print: text with control characters escaped; bytes as
    a Python literal (``repr``), ``hex`` or ``base64``."""
    if isinstance(message, bytes):
        if binary == "hex":
            return message.hex()
        if binary == "base64":
            return base64.b64encode(message).decode("ascii")
        return repr(message)
    return message.translate(_CONTROL)


class Printer:
    """Prints client events the way the article's ``client.js`` does."""

    def __init__(
        self,
        out: TextIO,
        *,
        raw: bool = False,
        envelopes: bool = False,
        interactive: bool = False,
        binary: str = "repr",
    ) -> None:
        self._out = out
        self._binary = binary
        self._interactive = interactive
        self._raw = raw
        """Print frames as they came (--json: one JSON object per line)."""
        self._envelopes = envelopes
        """Frames are trio-ws-demo.v1 JSON: show the message inside."""
        self.output_closed = False
        """Whoever read our stdout has gone (``| head``)."""
        self.on_output_closed: Callable[[], None] | None = None

    def report(self, event: Event) -> None:
        if isinstance(event, Opened):
            line = "Connection opened"
        elif isinstance(event, Sent):
            line = f"Client sends: {escape(event.message, self._binary)}"
        elif isinstance(event, Received):
            if self._raw:
                line = escape(event.message, self._binary)
            elif not self._envelopes:
                line = f"Server sent:  {escape(event.message, self._binary)}"
            else:
                shown = _envelope_text(event.message)
                if shown is None:
                    return  # a joined or resume frame: said by other lines
                line = f"Server sent:  {escape(shown, self._binary)}"
        elif isinstance(event, Closed):
            line = "Connection closed"
            if self._interactive and event.by_server:
                why = f" {escape(event.reason)}" if event.reason else ""
                line += f" ({event.code}{why})"
        elif isinstance(event, Ponged):
            line = f"Pong after {event.seconds * 1000:.1f} ms"
        elif isinstance(event, Notice):
            line = f"! {event.text}"
        elif isinstance(event, Reconnecting):
            line = f"Connection lost ({event.why}); reconnecting in {event.delay:g} s"
        elif isinstance(event, Resumed):
            if event.recovered:
                line = "Reconnected, nothing missed"
            elif event.missing is not None:
                line = f"Reconnected, {event.missing} messages may be missing"
            else:
                line = "Reconnected, the server's history was lost: messages may be missing"
        if self.output_closed:
            return
        try:
            print(line, file=self._out, flush=True)
        except BrokenPipeError:
            # Nobody reads any more: stop quietly, and keep Python's own flush at
            # exit from complaining about the closed pipe.
            self.output_closed = True
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._out.fileno())
            if self.on_output_closed is not None:
                self.on_output_closed()


def _envelope_text(frame: Message) -> Message | None:
    """The message inside a trio-ws-demo.v1 envelope, or None for other frames."""
    try:
        data = json.loads(frame)
    except ValueError:
        return frame
    if not isinstance(data, dict) or data.get("type") != "message":
        return None if isinstance(data, dict) else frame
    if "text" in data:
        return str(data["text"])
    return base64.b64decode(str(data.get("base64", "")))
