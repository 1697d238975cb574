"""Why a connection ended, and what that means for its last bytes: one table.

Every way a WebSocket connection can end is a row of :data:`CLOSE_TABLE`.
The first reason noted wins (:meth:`~trio_ws_demo.connection.Connection.note_end`);
the :class:`~trio_ws_demo.outbox.Outbox` then applies the row: whether queued
messages are flushed first (always bounded by ``close_timeout``), which close
code goes out, and who writes that close frame. A frame already started is
always finished first, whatever the row says (RFC 6455 §5.4: a frame cannot be
taken back), and nothing is written after a close frame (§5.5.1).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["CLOSE_TABLE", "CloseRule", "End", "Sender"]


class End(enum.Enum):
    """Why a connection ended."""

    PEER_CLOSED = "peer closed"
    SHUTDOWN = "server shutting down"
    SLOW = "slow consumer"
    BAD_INPUT = "bad input"
    PING_TIMEOUT = "ping timeout"
    PEER_VANISHED = "connection lost"
    SERVER_ERROR = "internal error"


class Sender(enum.Enum):
    """Who writes the close frame."""

    ENGINE = "trio-websocket"
    SERVER = "the server"
    NOBODY = "nobody"


@dataclass(frozen=True)
class CloseRule:
    flush: bool
    """Send what is already queued before the close frame (bounded by close_timeout)."""
    code: int | None
    """The code we close with; None where the engine chooses it (or nothing is sent)."""
    sender: Sender


CLOSE_TABLE: dict[End, CloseRule] = {
    # §5.5.1: after a peer's Close an endpoint may finish the message it is
    # sending, and answers with a Close echoing the peer's code. We also flush
    # what was queued before it (as Node ws does), so a client that sends and
    # closes at once still gets its echo. A peer's own 1002/1007/1009 is a
    # normal close too: it is the peer's verdict, not bad input from it.
    End.PEER_CLOSED: CloseRule(flush=True, code=None, sender=Sender.ENGINE),
    # §7.4.1 1001 "going away": a server going down; clients get what was
    # published before the shutdown began.
    End.SHUTDOWN: CloseRule(flush=True, code=1001, sender=Sender.SERVER),
    # §7.4.1 1008 "policy violation": the client fell over its inbox budget;
    # its backlog is dropped, the frame under way is finished.
    End.SLOW: CloseRule(flush=False, code=1008, sender=Sender.SERVER),
    # §7.4.1 1002 protocol error, 1007 invalid UTF-8, 1009 message too big:
    # the peer broke the rules, so nothing more is sent to it but the close.
    # trio-websocket writes 1009 itself, but counts characters for text, so
    # the connection checks the bytes and closes 1009 itself; for 1002/1007
    # trio-websocket writes no close frame, and engine.py writes it.
    End.BAD_INPUT: CloseRule(flush=False, code=None, sender=Sender.ENGINE),
    # §7.1.1: the server may drop the TCP connection; a peer silent through
    # a ping and its timeout would not read a close frame anyway.
    End.PING_TIMEOUT: CloseRule(flush=False, code=None, sender=Sender.NOBODY),
    # §7.1.5: the TCP connection closed without a close frame (code 1006):
    # there is nobody left to answer.
    End.PEER_VANISHED: CloseRule(flush=False, code=None, sender=Sender.NOBODY),
    # §7.4.1 1011 "internal error": an unexpected exception in this
    # connection; the close goes out if the socket still works.
    End.SERVER_ERROR: CloseRule(flush=False, code=1011, sender=Sender.SERVER),
}
