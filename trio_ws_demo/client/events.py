"""What the client hands its caller: the events ``on_event`` receives, and the
:class:`EchoResult` a run returns.

These are plain frozen values (like wsproto's events) with no I/O and no
trio-websocket: the CLI prints from them, tests compare them, and every other
module in ``client/`` produces them. Keeping them apart from the code that
makes them lets a reader see the client's whole vocabulary on one page.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "Closed",
    "ControlFrame",
    "EchoResult",
    "Echoed",
    "Event",
    "Message",
    "Notice",
    "Opened",
    "Ponged",
    "Presence",
    "Received",
    "Reconnecting",
    "Resumed",
    "Sent",
]

Message = str | bytes


# -- events reported while the client runs (frozen, like wsproto's) ------------


@dataclass(frozen=True)
class Opened:
    url: str
    subprotocol: str | None


@dataclass(frozen=True)
class Sent:
    message: Message


@dataclass(frozen=True)
class Echoed:
    """The server sent one of our messages back: on a ``trio-ws-demo.v1``
    server, the message at the offset its ack named (never a history copy
    with the same text); on another, the first message equal to it."""

    message: Message


@dataclass(frozen=True)
class Received:
    message: Message


@dataclass(frozen=True)
class Closed:
    code: int | None
    reason: str | None
    by_server: bool


@dataclass(frozen=True)
class Resumed:
    """After a reconnect: did the server still have everything we missed?"""

    recovered: bool
    missing: int | None
    """How many messages may be missing, when the offsets tell."""
    keeps_history: bool = True
    """False when the server keeps no history at all (``serve --history 0``)."""


@dataclass(frozen=True)
class Ponged:
    """The answer to ``/ping`` in an interactive session."""

    seconds: float


@dataclass(frozen=True)
class Notice:
    """Something an interactive session tells its user (a bad command, say)."""

    text: str


@dataclass(frozen=True)
class Presence(Notice):
    """Who came or went (a ``presence`` frame): shown in an interactive session."""


@dataclass(frozen=True)
class Reconnecting:
    delay: float
    why: str


@dataclass(frozen=True)
class ControlFrame:
    """A ping or pong from the server (reported for ``--show-ping``; trio-websocket
    answers pings itself)."""

    kind: str
    payload: bytes


Event = (
    Opened
    | Sent
    | Received
    | Echoed
    | Closed
    | Resumed
    | Reconnecting
    | Ponged
    | Notice
    | ControlFrame
)


# -- what a run returns -------------------------------------------------------


@dataclass
class EchoResult:
    """Everything one client run saw."""

    sent: list[Message] = field(default_factory=list)
    received: list[Message] = field(default_factory=list)
    missing: list[Message] = field(default_factory=list)
    """Messages whose echo did not arrive within the timeout."""
    close_code: int | None = None
    close_reason: str | None = None
    closed_by_server: bool = False
    interrupted: bool = False
    """The caller's *stop* ended the run (before the handshake finished, or before
    every echo came back)."""

    @property
    def ok(self) -> bool:
        """True when every sent message came back."""
        return not self.missing
