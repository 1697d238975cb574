"""The server's side of one WebSocket connection after the 101: sans-I/O, one close state.

Bytes in (:meth:`ServerProtocol.receive_data`), events out
(:meth:`ServerProtocol.events`), frames to send as the events' fields. Nothing
here touches a socket or imports trio, so every rule below is tested by feeding
bytes (``tests/test_protocol.py``). The front door has already read the request
head and the connection writes the 101 itself, so the head is parsed once.

wsproto's frame layer (:class:`wsproto.frame_protocol.FrameProtocol`, what its
``Connection`` wraps, without that class's per-connection event queue) parses
frames: masking, opcodes, control-frame rules, close codes and incremental
UTF-8 (its errors carry 1002 or 1007). On top of it this module owns:

* **message assembly, bounded by what a message really costs.** A message is
  joined in one ``bytearray`` as its fragments arrive, and every frame after
  the first costs :data:`FRAME_COST` bytes toward ``max_message_size`` on top
  of its payload. Empty or tiny continuation frames therefore cannot grow
  memory or CPU without bound (security finding S3/S6): at the default 1 MiB a
  message has at most 16,384 fragments. Past the limit: 1009.
* **pongs, only while open** (RFC 6455 §5.5.2; once a close is under way we
  answer nothing but the close, which is what crashed trio-websocket: B4).
* **the close state**, in one table, :data:`CLOSE_TABLE` (why a connection
  ends → what its last bytes are) and the :class:`State` rows below.

State transitions (the RFC rule on each row)::

    OPEN ── peer's Close ─────────────→ CLOSED   answer echoing its code (§5.5.1)
    OPEN ── frame we cannot accept ───→ CLOSED   Close 1002/1007/1009, then TCP (§7.1.7)
    OPEN ── we close (start_close) ───→ CLOSING  our Close; data from the peer is dropped
    CLOSING ── peer's Close ──────────→ CLOSED   the handshake is complete (§7.1.2)
    any ── end of stream ─────────────→ CLOSED   no close frame: 1006 (§7.1.5)
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

from wsproto.frame_protocol import Frame, FrameProtocol, Opcode, ParseFailed

from .frames import OPCODE_BINARY, OPCODE_TEXT, encode_close, encode_payload

__all__ = [
    "CLOSE_TABLE",
    "FRAME_COST",
    "CloseRule",
    "Closed",
    "End",
    "Message",
    "PingReceived",
    "ServerProtocol",
    "State",
]

#: What each frame after a message's first counts toward ``max_message_size``,
#: beyond its payload: about what holding and parsing one frame costs.
FRAME_COST = 64


class End(enum.Enum):
    """Why a connection ended."""

    PEER_CLOSED = "peer closed"
    SHUTDOWN = "server shutting down"
    SLOW = "slow consumer"
    BAD_INPUT = "bad input"
    PING_TIMEOUT = "ping timeout"
    PEER_VANISHED = "connection lost"
    SERVER_ERROR = "internal error"
    NOT_ALLOWED = "not allowed to publish"
    TOKEN_EXPIRED = "token expired"
    RATE_LIMIT = "rate limit"


@dataclass(frozen=True)
class CloseRule:
    flush: bool
    """Send what is already queued before the close frame (bounded by close_timeout)."""
    code: int | None
    """The code we close with; None where the peer's frame decides it, or where
    no close frame is sent at all (see *sends*)."""
    sends: bool
    """Whether a close frame goes out at all."""


CLOSE_TABLE: dict[End, CloseRule] = {
    # §5.5.1: after a peer's Close an endpoint may finish the message it is
    # sending, and answers with a Close echoing the peer's code. We also flush
    # what was queued before it (as Node ws does), so a client that sends and
    # closes at once still gets its echo. A peer's own 1002/1007/1009 is a
    # normal close too: it is the peer's verdict, not bad input from it.
    End.PEER_CLOSED: CloseRule(flush=True, code=None, sends=True),
    # §7.4.1 1001 "going away": a server going down; clients get what was
    # published before the shutdown began.
    End.SHUTDOWN: CloseRule(flush=True, code=1001, sends=True),
    # §7.4.1 1008 "policy violation": the client fell over its inbox budget;
    # its backlog is dropped, the frame under way is finished.
    End.SLOW: CloseRule(flush=False, code=1008, sends=True),
    # §7.4.1 1002 protocol error, 1007 invalid UTF-8, 1009 message too big:
    # the peer broke the rules (§7.1.7 "fail the connection"), so nothing more
    # is sent to it but the close, whose code names the rule.
    End.BAD_INPUT: CloseRule(flush=False, code=None, sends=True),
    # §7.1.1: the server may drop the TCP connection; a peer silent through
    # a ping and its timeout would not read a close frame anyway.
    End.PING_TIMEOUT: CloseRule(flush=False, code=None, sends=False),
    # §7.1.5: the TCP connection closed without a close frame (code 1006):
    # there is nobody left to answer.
    End.PEER_VANISHED: CloseRule(flush=False, code=None, sends=False),
    # §7.4.1 1011 "internal error": an unexpected exception in this
    # connection; the close goes out if the socket still works.
    End.SERVER_ERROR: CloseRule(flush=False, code=1011, sends=True),
    # §7.4.1 1008 "policy violation": a message the token gives no right to
    # send (it is never delivered), or more messages than --max-message-rate;
    # what was queued for the client still goes out first.
    End.NOT_ALLOWED: CloseRule(flush=True, code=1008, sends=True),
    End.RATE_LIMIT: CloseRule(flush=True, code=1008, sends=True),
    # 1008 too, at the token's exp: its rights end there.
    End.TOKEN_EXPIRED: CloseRule(flush=False, code=1008, sends=True),
}


class State(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"
    """We sent a Close and wait for the peer's."""
    CLOSED = "closed"
    """No more frames either way."""


@dataclass(frozen=True, slots=True)
class Message:
    """A complete message, with the unmasked frame that carries it to other clients."""

    message: str | bytes
    frame: bytes


@dataclass(frozen=True, slots=True)
class PingReceived:
    """The peer pinged while open: send *pong*."""

    pong: bytes


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection is CLOSED by what the peer sent.

    *end* is PEER_CLOSED (the peer's Close, with its *code* and *reason*) or
    BAD_INPUT (our *code* names the broken rule). *frame* is the close frame to
    send last, or None if ours already went out (the peer answered it).
    """

    end: End
    code: int | None
    reason: str
    frame: bytes | None


Event = Message | PingReceived | Closed

_PONG = 0x8A

#: The reason in our close frame when the peer broke a rule (short: it is sent).
_FAILURE_REASONS = {1002: "protocol error", 1007: "invalid UTF-8", 1009: "message too big"}


class ServerProtocol:
    """One connection's WebSocket protocol after the handshake (server side)."""

    __slots__ = ("_cost", "_parser", "_parts", "_text", "max_message_size", "state")

    def __init__(self, max_message_size: int, early: bytes = b"") -> None:
        self.max_message_size = max_message_size
        self.state = State.OPEN
        self._parser = FrameProtocol(client=False, extensions=[])
        self._parts: bytearray | None = None
        """The message so far, once it spans more than one event."""
        self._cost = 0
        self._text = False
        if early:  # frames sent in the same packet as the request head
            self._parser.receive_bytes(early)

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed bytes read from the peer (never after CLOSED)."""
        if self.state is not State.CLOSED:
            self._parser.receive_bytes(bytes(data))

    def start_close(self, code: int, reason: str) -> bytes | None:
        """Our Close frame, moving OPEN → CLOSING; None if a close is already under way."""
        if self.state is not State.OPEN:
            return None
        self.state = State.CLOSING
        self._parts = None
        self._cost = 0
        return encode_close(code, reason)

    def events(self) -> Iterator[Event]:
        """What the bytes fed so far mean, in order; stops after :class:`Closed`."""
        try:
            for frame in self._parser.received_frames():
                if self.state is State.CLOSED:
                    return
                opcode = frame.opcode
                if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                    message = self._assemble(frame)
                    if message is not None:
                        yield message
                    elif self._over_limit():
                        yield Closed(End.BAD_INPUT, 1009, "message too big", self._fail(1009))
                        return
                elif opcode is Opcode.PING:
                    if self.state is State.OPEN:  # §5.5.2; nothing but the close once closing
                        payload = bytes(frame.payload)  # type: ignore[arg-type]
                        yield PingReceived(bytes((_PONG, len(payload))) + payload)
                elif opcode is Opcode.CLOSE:
                    close = frame.payload
                    assert isinstance(close, tuple)
                    yield self._closed(int(close[0]), close[1])
                    return
                # PONG: the read itself was the sign of life the keepalive wanted.
        except ParseFailed as exc:  # the peer broke a rule: 1002, or 1007 for UTF-8
            if self.state is not State.CLOSED:
                code = int(exc.code)
                yield Closed(End.BAD_INPUT, code, str(exc), self._fail(code))

    def _over_limit(self) -> bool:
        return self._cost > self.max_message_size

    def _closed(self, code: int, reason: str) -> Closed:
        was = self.state
        self.state = State.CLOSED
        self._parts = None
        if was is State.CLOSING:
            return Closed(End.PEER_CLOSED, code, reason, None)
        # §5.5.1: echo the peer's code; a Close without one (1005) gets none back.
        answer = encode_close(None) if code == 1005 else encode_close(code, "")
        return Closed(End.PEER_CLOSED, code, reason, answer)

    def _fail(self, code: int) -> bytes:
        self.state = State.CLOSED
        self._parts = None
        return encode_close(code, _FAILURE_REASONS.get(code, ""))

    def _assemble(self, frame: Frame) -> Message | None:
        """Add one piece of a message; the whole message once it is finished.

        None while a message is incomplete, or dropped (we are closing), or
        over the limit (then :meth:`_over_limit` is true).
        """
        if self.state is not State.OPEN:
            return None
        data = frame.payload
        text = frame.opcode is Opcode.TEXT
        payload = data.encode() if isinstance(data, str) else bytes(data)  # type: ignore[arg-type]
        parts = self._parts
        if parts is None and frame.message_finished:  # the common case: one piece, no copy
            if len(payload) > self.max_message_size:
                self._cost = len(payload)
                return None
            if isinstance(data, str):
                return Message(data, encode_payload(OPCODE_TEXT, payload))
            return Message(payload, encode_payload(OPCODE_BINARY, payload))
        if parts is None:
            parts = self._parts = bytearray()
            self._cost = 0
            self._text = text
        self._cost += len(payload)
        if frame.frame_finished and not frame.message_finished:
            self._cost += FRAME_COST  # the next frame is a continuation
        if self._cost > self.max_message_size:
            return None
        parts += payload
        if not frame.message_finished:
            return None
        self._parts = None
        self._cost = 0
        body = bytes(parts)
        if self._text:
            return Message(body.decode(), encode_payload(OPCODE_TEXT, body))
        return Message(body, encode_payload(OPCODE_BINARY, body))
