"""How the echo client's events reach the terminal (or a script).

Remote content is escaped before it is printed, so that a peer cannot move the
cursor, change colours or retitle the terminal: messages, close reasons,
notices, presence names, refusals and reconnect reasons alike (a presence name
``\x1b]0;pwned\x07\x1b[2J`` retitled and cleared the terminal of ``echo -i``:
finding T10). Escaping applies to every line of the text output, whether
stdout is a terminal or a pipe, as it always has for messages: a script that
needs the bytes faithfully uses ``--json`` (JSON strings) or ``--binary raw``.
Ordinary text, non-ASCII letters and emoji included, prints as it is.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import Callable
from typing import TextIO, TypeGuard

from ..client import (
    Closed,
    ControlFrame,
    Echoed,
    Event,
    Message,
    Notice,
    Opened,
    Ponged,
    Presence,
    Received,
    Reconnecting,
    Sent,
)
from ..envelopes import SUBPROTOCOL, AckFrame, MessageFrame, decode, is_greeting, unwrap
from ..redact import escape_for_terminal
from .editor import LineEditor

__all__ = ["Printer", "close_error", "escape"]


def escape(message: Message, binary: str = "repr") -> str:
    """Make remote content safe to print: text with control characters escaped; bytes as
    a Python literal (``repr``), ``hex`` or ``base64``."""
    if isinstance(message, bytes):
        if binary == "hex":
            return message.hex()
        if binary == "base64":
            return base64.b64encode(message).decode("ascii")
        return repr(message)
    return escape_for_terminal(message)


def close_error(code: int | None, reason: str | None) -> str:
    """The line for a server that closed with *code*, not 1000: the error, and why."""
    why = f" ({escape(reason)})" if reason else ""
    return f"Connection error: the server closed the connection with code {code}{why}"


class Printer:
    """Prints the client's events for a person or for a script.

    For a person (the default) the conversation goes to stdout the way the article's
    ``client.js`` prints it (``Client sends: …``, ``Server sent:  …``) and status lines
    (``Connection opened``, ``Connection closed``, reconnects, notices) go to stderr,
    so a terminal shows both while a pipe gets only the conversation.

    For a script (``json_lines``) every event is one JSON object on stdout, with an
    ``event`` field: ``opened``, ``sent``, ``message``, ``closed``, ``pong`` (``ms``, for
    ``/ping``), ``notice``, ``reconnecting``, ``ping`` and ``pong`` (``hex``, with
    --show-ping), and for trio-ws-demo.v1 frames their own ``type`` with the frame's
    fields (``joined``, ``resume``, ``message``, ``backplane``, ``error``), except a
    presence frame, whose own ``event`` field (``join``, ``leave``, ``changes``) names
    it. Text is ``"text"``; binary is ``"base64"``.
    """

    def __init__(
        self,
        out: TextIO,
        err: TextIO,
        *,
        json_lines: bool = False,
        interactive: bool = False,
        binary: str = "repr",
        only_echoes: bool = False,
        show_ping: bool = False,
    ) -> None:
        self._out = out
        self._show_ping = show_ping
        self._lost: Closed | None = None
        """A connection the server ended, held until the next event: one line for
        one event ("reconnecting" says it, when a reconnect follows)."""
        self.said_close = False
        """The server's close has had its line (the caller adds none)."""
        self._only_echoes = only_echoes
        """Send-and-check (no --listen): show what was sent and its echoes; other
        traffic, a room's history or other clients' messages, is for --listen."""
        self.editor: LineEditor | None = None
        """On a terminal in -i mode: lines are printed above the one being typed."""
        self._err = err
        self._json = json_lines
        self._interactive = interactive
        self._binary = binary
        self._envelopes: bool | None = False
        """The server speaks trio-ws-demo.v1: frames are JSON envelopes (None: its
        first frame, which says so, has not come yet)."""
        self.output_closed = False
        """Whoever read our stdout has gone (``| head``)."""
        self.on_output_closed: Callable[[], None] | None = None

    def report(self, event: Event) -> None:
        lost, self._lost = self._lost, None
        if not self._json and isinstance(event, Closed) and event.by_server:
            self._lost = event  # said by the reconnect line, if one follows (see flush)
            return
        if lost is not None and not isinstance(event, Reconnecting):
            self._report(lost)
        self._report(event)

    def flush(self) -> None:
        """Say what is still held back (a lost connection no reconnect followed)."""
        lost, self._lost = self._lost, None
        if lost is not None:
            self._report(lost)

    def _report(self, event: Event) -> None:
        if isinstance(event, Opened):
            # v1 only if the server shows it: its first frame is joined or resume.
            self._envelopes = None if event.subprotocol == SUBPROTOCOL else False
        elif isinstance(event, Received) and self._envelopes is None:
            self._envelopes = is_greeting(event.message)
        if self._json:
            fields = self._as_json(event)
            if fields is not None:
                self._write(json.dumps(fields, ensure_ascii=False) + "\n")
        elif (
            isinstance(event, Received | Echoed)
            and isinstance(event.message, bytes)
            and self._binary == "raw"
        ):
            # Send-and-check shows our echoes only, as the client recognised them.
            if isinstance(event, Echoed) is self._only_echoes:
                self._write(event.message)
        else:
            shown = self._as_text(event)
            if shown is not None:
                line, to_stdout = shown
                editor = self.editor
                if editor is not None:  # above the prompt, the line being typed kept
                    with contextlib.suppress(OSError):
                        editor.print_above(line, self._out if to_stdout else self._err)
                elif to_stdout:
                    self._write(line + "\n")
                else:
                    self._status(line)

    def _as_text(self, event: Event) -> tuple[str, bool] | None:
        """The line for *event*, and whether it is conversation (stdout) or status."""
        if isinstance(event, Sent):
            # In raw mode stdout is the messages' bytes and nothing else: what we
            # sent is a status line then.
            shown = f"Client sends: {escape(event.message, self._binary)}"
            return shown, self._binary != "raw"
        if isinstance(event, Echoed):
            # Recognised by the client (by its ack's offset on a v1 server): a
            # history copy with the same text is never taken for it.
            if not self._only_echoes:
                return None  # shown as it arrived
            return f"Server sent:  {escape(event.message, self._binary)}", True
        if isinstance(event, Received):
            message = unwrap(event.message) if self._envelopes else event.message
            if message is None:
                if self._interactive and self._envelopes and isinstance(event.message, str):
                    frame = decode(event.message)
                    if isinstance(frame, AckFrame):  # where a line of ours landed
                        return f"Delivered as offset {frame.offset}", False
                return None  # a joined or resume frame: said by other lines
            if self._only_echoes:
                return None  # history or another client: its echo is said by Echoed
            shown = escape(message, self._binary)
            if self._interactive and self._envelopes and isinstance(event.message, str):
                frame = decode(event.message)  # who sent it, in the server's word
                # A chosen name (a token's sub, ?name=): a guest's id is noise.
                sender = frame.sender if isinstance(frame, MessageFrame) else None
                if sender and not sender.startswith("guest-"):
                    shown = f"{escape(sender)}: {shown}"
            return f"Server sent:  {shown}", True
        if isinstance(event, Opened):
            return "Connection opened", False
        if isinstance(event, Closed):
            self.said_close = event.by_server
            if event.by_server and event.code == 1006:
                return "Connection lost (no close frame)", False
            line = "Connection closed"
            if self._interactive and event.code not in (None, 1000):
                # What the user or the server said: as wscat writes it.
                why = f', reason: "{escape(event.reason)}"' if event.reason else ""
                line = f"Disconnected (code: {event.code}{why})"
            elif event.by_server and event.code not in (None, 1000):
                # One line for one event: the close is the error, and says why.
                line = close_error(event.code, event.reason)
            return line, False
        if isinstance(event, Ponged):
            return f"Pong after {event.seconds * 1000:.1f} ms", False
        if isinstance(event, Presence) and not self._interactive:
            return None  # --listen shows messages; a session (-i) shows who comes and goes
        if isinstance(event, Notice):
            return f"! {escape(event.text)}", False
        if isinstance(event, Reconnecting):
            self.said_close = False  # a new connection is tried
            why = escape(event.why)
            return f"Connection lost ({why}); reconnecting in {event.delay:g} s", False
        if isinstance(event, ControlFrame):
            if not self._show_ping:
                return None
            what = "Ping from the server" if event.kind == "ping" else "Pong from the server"
            payload = f" ({escape(event.payload, 'hex')})" if event.payload else ""
            return what + payload, False
        if event.recovered:
            return "Reconnected, nothing missed", False
        if not event.keeps_history:
            return (
                "Reconnected; the server keeps no history (--history 0): "
                "messages sent while you were away are missing"
            ), False
        if event.missing is not None:
            return f"Reconnected, {event.missing} messages may be missing", False
        return "Reconnected, the server's history was lost: messages may be missing", False

    def _as_json(self, event: Event) -> dict[str, object] | None:
        if isinstance(event, ControlFrame):
            if not self._show_ping:
                return None
            return {"event": event.kind, "hex": event.payload.hex()}
        if isinstance(event, Opened):
            return {"event": "opened", "url": event.url, "subprotocol": event.subprotocol}
        if isinstance(event, Sent):
            return {"event": "sent", **_payload(event.message)}
        if isinstance(event, Received):
            if self._envelopes and isinstance(event.message, str):
                frame = decode(event.message)
                if frame is not None and frame.kind is not None:
                    return {"event": frame.kind, **frame.fields}
            return {"event": "message", **_payload(event.message)}
        if isinstance(event, Closed):
            by = "server" if event.by_server else "client"
            return {"event": "closed", "code": event.code, "reason": event.reason, "by": by}
        if isinstance(event, Ponged):
            return {"event": "pong", "ms": round(event.seconds * 1000, 3)}
        if isinstance(event, Presence):
            return None  # the presence frame itself is an event already
        if isinstance(event, Notice):
            return {"event": "notice", "text": event.text}
        if isinstance(event, Reconnecting):
            return {"event": "reconnecting", "delay": event.delay, "why": event.why}
        return None  # Resumed: the server's own "resume" frame says it

    def _write(self, data: str | bytes) -> None:
        if self.output_closed:
            return
        try:
            if isinstance(data, bytes):
                self._out.flush()
                self._out.buffer.write(data)
                self._out.buffer.flush()
            else:
                self._out.write(data)
                self._out.flush()
        except BrokenPipeError:
            # Nobody reads any more: stop quietly, and keep Python's own flush at
            # exit from complaining about the closed pipe.
            self.output_closed = True
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._out.fileno())
            if self.on_output_closed is not None:
                self.on_output_closed()

    def _status(self, line: str) -> None:
        with contextlib.suppress(OSError):
            print(line, file=self._err, flush=True)


def _is_bytes(message: Message) -> TypeGuard[bytes]:
    return isinstance(message, bytes)


def _payload(message: Message) -> dict[str, str]:
    if isinstance(message, bytes):
        return {"base64": base64.b64encode(message).decode("ascii")}
    return {"text": message}
