"""Where the client is in its room's stream, and reconnecting to pick it up again.

:class:`Position` reads each frame of a ``trio-ws-demo.v1`` server (through
:mod:`trio_ws_demo.envelopes`, which owns that format) and keeps the offset and
epoch they carry; it turns ``resume``, ``backplane``, ``presence`` and
``error`` frames into events. :func:`resuming` runs one session after another
(0.5 s doubling to 10 s between them) at the URL that asks for what was missed.
Both the echo client and the interactive session resume this same way; neither
knows how a connection is made (that is :mod:`.session`).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from ..envelopes import (
    GREETINGS,
    BackplaneFrame,
    ErrorFrame,
    Frame,
    JoinedFrame,
    MessageFrame,
    PresenceFrame,
    ResumeFrame,
    decode,
)
from ..errors import ClientError
from .events import EchoResult, Event, Message, Notice, Presence, Reconnecting, Resumed

__all__ = ["Position", "resuming"]

_BACKOFF_FIRST, _BACKOFF_MAX = 0.5, 10.0


@dataclass
class Position:
    """Where a client is in its room's stream, for resuming."""

    offset: int | None = None
    epoch: str | None = None
    speaks_v1: bool | None = None
    """Whether this connection's server speaks trio-ws-demo.v1, from its first frame
    (``joined`` or ``resume``): a server that merely accepts the first subprotocol
    offered (Node ``ws`` does) sends plain messages. None until that frame."""
    link_down: bool = False
    """The server said it lost its link to the other servers, and not yet that
    it is back."""

    def query(self) -> str:
        if self.offset is None or self.epoch is None:
            return ""
        return urllib.parse.urlencode({"since": self.offset, "epoch": self.epoch})

    def read(self, frame: Message, report: Callable[[Event], None]) -> Frame | None:
        """Note the offset or epoch a v1 frame carries; return the frame decoded
        (None for a frame that is not an envelope, or a server that sends none)."""
        if self.speaks_v1 is False:
            return None
        data = decode(frame)
        if self.speaks_v1 is None:
            self.speaks_v1 = data is not None and data.kind in GREETINGS
        if data is None or not self.speaks_v1:
            return None
        if isinstance(data, JoinedFrame):
            # The history that follows ends at "offset".
            self.epoch = data.epoch
            self.offset = data.start
        elif isinstance(data, ResumeFrame):
            recovered = data.recovered
            same_epoch = data.epoch == self.epoch
            missing = None
            if not recovered and same_epoch and self.offset is not None:
                missing = max(0, data.offset - self.offset)
            report(Resumed(recovered, missing, keeps_history=data.keeps_history))
            if not same_epoch:  # a new history: its messages follow from its start
                self.epoch = data.epoch
                self.offset = 0
        elif isinstance(data, BackplaneFrame):
            # The server lost (or got back) its link to the other servers: its
            # offsets are now in another epoch.
            self.epoch = data.epoch
            self.offset = data.offset
            was_down, self.link_down = self.link_down, not data.up
            if data.up and data.recovered and not was_down:
                # A new room's stream was born with its first message: a new
                # epoch, and nothing missed. Not news for a person.
                return data
            if not data.up:
                text = (
                    "the server lost its link to the other servers: messages from "
                    "their clients may be missing"
                )
            elif data.recovered is False:
                text = (
                    "the server is connected to the other servers again; "
                    "messages sent meanwhile may be missing"
                )
            else:
                text = "the server is connected to the other servers again"
            report(Notice(text))
        elif isinstance(data, PresenceFrame):
            report(Presence(_presence_text(data)))
        elif isinstance(data, ErrorFrame):
            # About something this client did, e.g. a message Redis refused.
            report(Notice(data.reason))
        elif isinstance(data, MessageFrame):
            self.offset = data.offset
        return data


def _presence_text(data: PresenceFrame) -> str:
    """ "alice joined (2 here)", "3 joined, 1 left (5 here)" for a presence frame."""
    joined, left = data.joined, data.left
    here = f"({data.clients} here)"
    if len(joined) + len(left) == 1:
        return f"{(joined or left)[0]} {'joined' if joined else 'left'} {here}"
    parts = [
        f"{len(names)} {verb}" for names, verb in ((joined, "joined"), (left, "left")) if names
    ]
    return f"{', '.join(parts) or 'presence changed'} {here}"


def _close_text(result: EchoResult) -> str:
    """How the server ended a connection, in the words used without --resume too."""
    if result.close_code == 1006:
        return "no close frame"
    reason = f" ({result.close_reason})" if result.close_reason else ""
    return f"the server closed the connection with code {result.close_code}{reason}"


async def resuming(
    url: str,
    session: Callable[[str, Position], Awaitable[EchoResult]],
    report: Callable[[Event], None],
    stop: trio.Event | None,
) -> EchoResult:
    """Run *session* again whenever the server goes away, with backoff (0.5 s doubling
    to 10 s), at the URL that asks for what was missed (``?since=N&epoch=E``)."""
    position = Position()
    delay = _BACKOFF_FIRST
    while True:
        separator = "&" if urllib.parse.urlsplit(url).query else "?"
        query = position.query()
        try:
            result = await session(f"{url}{separator}{query}" if query else url, position)
        except ClientError as exc:
            if position.epoch is None:
                raise  # never connected: nothing to resume
            why = str(exc)
        else:
            if (stop is not None and stop.is_set()) or not result.closed_by_server:
                return result
            delay = _BACKOFF_FIRST
            why = _close_text(result)
        report(Reconnecting(delay, why))
        with trio.move_on_after(delay):
            if stop is not None:
                await stop.wait()  # Ctrl-C ends the wait
            else:
                await trio.sleep_forever()
        if stop is not None and stop.is_set():
            return EchoResult(close_code=1000)
        delay = min(delay * 2, _BACKOFF_MAX)
