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
* **nothing parsed once our close is under way.** In CLOSING the peer's frames
  are skipped by their headers (:class:`~trio_ws_demo.frames.FrameScanner`): no unmasking, no UTF-8,
  no assembly; only its Close is read. A flood after a rate-limit close costs a
  header per frame, and bad input then makes no second close frame: ours is
  already on its way (finding R3).
* **permessage-deflate inbound** (RFC 7692), when the handshake agreed it:
  :class:`_Deflate` is the wsproto extension that hands each compressed
  message's frames to an :class:`~trio_ws_demo.inflate.Inflater`, bounded by
  ``max_message_size`` *after* inflating (a bomb fails with 1009 having
  inflated at most that much). RSV1 on a control or continuation frame is
  a protocol error (1002); data that is not deflate is 1007.
* **frames counted** (:attr:`ServerProtocol.frames_in`): every complete frame the
  peer sends, data, continuation or control, is one unit of its message rate,
  so pings and fragments are not free (finding T8).
* **the close state**, in one table, :data:`CLOSE_TABLE` (why a connection
  ends → what its last bytes are) and the :class:`State` rows below.

**Who ends a connection.** The connection (:mod:`trio_ws_demo.server.connection`) has
one rule, next to this table: once its reader stops, for whatever reason (the
peer's Close, bad input, end of stream, our close answered), everything that
follows, the flush, our close frame, the linger, is bounded by
``close_timeout``, and then the connection's nursery is cancelled. The
outbox's close is one-shot: a second caller waits for the first.

State transitions (the RFC rule on each row)::

    OPEN ── peer's Close ─────────────→ CLOSED   answer echoing its code (§5.5.1)
    OPEN ── frame we cannot accept ───→ CLOSED   Close 1002/1007/1009, then TCP (§7.1.7)
    OPEN ── we close (start_close) ───→ CLOSING  our Close; data from the peer is dropped
    CLOSING ── peer's Close ──────────→ CLOSED   the handshake is complete (§7.1.2)
    CLOSING ── bad input ─────────────→ CLOSED   no second Close: ours is under way
    any ── end of stream ─────────────→ CLOSED   no close frame: 1006 (§7.1.5)
"""

from __future__ import annotations

import enum
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from wsproto.extensions import Extension
from wsproto.frame_protocol import (
    CloseReason,
    Frame,
    FrameDecoder,
    FrameProtocol,
    Opcode,
    ParseFailed,
    RsvBits,
)

from .budget import MemoryBudget
from .frames import OPCODE_BINARY, OPCODE_TEXT, FrameScanner, encode_close, encode_payload
from .inflate import Inflater, TooBig

__all__ = [
    "CLOSE_TABLE",
    "FRAME_COST",
    "CloseRule",
    "Closed",
    "End",
    "Message",
    "Overloaded",
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
    OVERLOADED = "server overloaded"


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
    # §7.4.1 1013 "try again later" (IANA registry): the process's memory
    # budget (--max-memory) has no room for the message this client sends; it
    # is not delivered, and what was queued for the client still goes out.
    End.OVERLOADED: CloseRule(flush=True, code=1013, sends=True),
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


@dataclass(frozen=True, slots=True)
class Overloaded:
    """The process's memory budget has no room for the message the peer is
    sending: it is dropped, and the connection should close (1013)."""


Event = Message | PingReceived | Closed | Overloaded

_OVERLOADED = Overloaded()

_PONG = 0x8A
_CLOSE_ONLY = frozenset({0x8})

#: The reason in our close frame when the peer broke a rule (short: it is sent).
_FAILURE_REASONS = {1002: "protocol error", 1007: "invalid UTF-8", 1009: "message too big"}


def _between_messages(parser: FrameProtocol) -> bool:
    """Nothing of a frame or a fragmented message is in *parser*: a new one
    would carry on exactly where it stands. (wsproto 1.2 and 1.3: the frame
    under way is ``_frame_decoder.header``, its bytes ``.buffer``, a
    fragmented message's opcode ``_message_decoder.opcode``.)"""
    decoder = parser._frame_decoder
    return (
        decoder.header is None
        and not decoder.buffer.buffer
        and parser._message_decoder.opcode is None
    )


class _Deflate(Extension):
    """wsproto's extension hooks around our bounded :class:`Inflater`.

    wsproto's own ``PerMessageDeflate`` inflates without an output bound, so it
    is not used; this one keeps no zlib state between messages.
    """

    name = "permessage-deflate"

    def __init__(self, limit: int) -> None:
        self.inflater = Inflater(limit)
        self._compressed = False
        """The message under way is compressed (its first frame had RSV1)."""

    def enabled(self) -> bool:
        return True

    def offer(self) -> bool | str:
        return False  # a client's hook: the front door negotiates (see extensions.py)

    def frame_inbound_header(
        self, proto: FrameDecoder | FrameProtocol, opcode: Opcode, rsv: RsvBits, payload_length: int
    ) -> CloseReason | RsvBits:
        if rsv.rsv1 and (opcode.iscontrol() or opcode is Opcode.CONTINUATION):
            return CloseReason.PROTOCOL_ERROR  # RSV1 only on a message's first frame (§6.1)
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            self._compressed = rsv.rsv1
            if rsv.rsv1:
                self.inflater.start()
        return RsvBits(True, False, False)

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        header = proto.header if isinstance(proto, FrameDecoder) else None
        if not self._compressed or (header is not None and header.opcode.iscontrol()):
            return data
        return self._inflate(data, last=False)

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        header = proto.header if isinstance(proto, FrameDecoder) else None
        if not fin or not self._compressed or (header is not None and header.opcode.iscontrol()):
            return None
        self._compressed = False
        return self._inflate(b"", last=True)

    def _inflate(self, data: bytes, *, last: bool) -> bytes | CloseReason:
        try:
            if last:
                return self.inflater.finish()
            return self.inflater.feed(data)
        except TooBig:
            return CloseReason.MESSAGE_TOO_BIG
        except zlib.error:
            self.inflater.discard()
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA


class ServerProtocol:
    """One connection's WebSocket protocol after the handshake (server side)."""

    __slots__ = (
        "_budget",
        "_cost",
        "_deflate",
        "_dropping",
        "_held",
        "_parser",
        "_parts",
        "_scanner",
        "_text",
        "frames_in",
        "max_message_size",
        "state",
    )

    def __init__(
        self,
        max_message_size: int,
        early: bytes = b"",
        budget: MemoryBudget | None = None,
        *,
        deflate: bool = False,
    ) -> None:
        self.max_message_size = max_message_size
        self.state = State.OPEN
        # With permessage-deflate agreed, RSV1 marks a compressed message.
        self._deflate = _Deflate(max_message_size) if deflate else None
        self._parser: FrameProtocol | None = None
        """wsproto's parser, while a frame or message is under way; between
        messages (where an idle connection spends its life) there is none: it
        is about 800 bytes in 11 objects, and a new one is the same parser
        (the deflate extension keeps no zlib state between messages)."""
        self._parts: bytearray | None = None
        """The message so far, once it spans more than one event."""
        self._cost = 0
        self._text = False
        self._budget = budget
        """The process's memory budget: a message being assembled holds its part of it."""
        self._held = 0
        """Bytes of the budget the message being assembled holds."""
        self._dropping = False
        """The budget had no room for the message under way: drop its remaining frames."""
        self._scanner: FrameScanner | None = None
        """Once closing: the peer's frames read by their headers, for its Close."""
        self.frames_in = 0
        """Complete frames read from the peer, of any kind: what its rate limit counts."""
        if early:  # frames sent in the same packet as the request head
            self.receive_data(early)

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed bytes read from the peer (never after CLOSED)."""
        if self.state is State.CLOSED:
            return
        if self._scanner is not None:
            self._scanner.feed(data)
            return
        parser = self._parser
        if parser is None:
            extensions: list[Extension] = [self._deflate] if self._deflate is not None else []
            self._parser = parser = FrameProtocol(client=False, extensions=extensions)
        parser.receive_bytes(bytes(data))
        if self.state is State.CLOSING:
            self._start_scanning()

    def more_read(self) -> bool:
        """Bytes of another frame came with the event just given (the same read
        holds more): what a coalesced step wants to know before it delivers a
        message (:func:`~trio_ws_demo.coalesce.more_to_come`)."""
        # wsproto 1.2 and 1.3: what the decoder has not parsed yet is .buffer
        # past .bytes_used (see _between_messages).
        parser = self._parser
        if parser is None:
            return False
        buffer = parser._frame_decoder.buffer
        return len(buffer.buffer) > buffer.bytes_used

    def start_close(self, code: int, reason: str) -> bytes | None:
        """Our Close frame, moving OPEN → CLOSING; None if a close is already under way."""
        if self.state is not State.OPEN:
            return None
        self.state = State.CLOSING
        self._drop_message()
        self._start_scanning()
        return encode_close(code, reason)

    def _start_scanning(self) -> None:
        """Hand the rest of the stream to the header scanner, at the next point where
        it can take over: anywhere but inside a control frame (at most 125 bytes)."""
        # wsproto's FrameDecoder keeps what it has not parsed in .buffer and the
        # frame under way in .header / .payload_consumed (wsproto 1.2 and 1.3).
        if self._parser is None:  # between messages: nothing of a frame is here
            self._scanner = FrameScanner(_CLOSE_ONLY, b"", 0)
            return
        decoder = self._parser._frame_decoder
        header = decoder.header
        if header is not None and header.opcode.iscontrol():
            return  # whole when its payload is here: wsproto finishes it first
        skip = header.payload_len - decoder.payload_consumed if header is not None else 0
        buffer = decoder.buffer
        self._scanner = FrameScanner(_CLOSE_ONLY, buffer.buffer[buffer.bytes_used :], skip)
        buffer.buffer = bytearray()
        buffer.bytes_used = 0

    def events(self) -> Iterator[Event]:
        """What the bytes fed so far mean, in order; stops after :class:`Closed`."""
        if self._scanner is None:
            yield from self._parsed_events()
            if self.state is not State.CLOSING:
                return
            self._start_scanning()
        scanner = self._scanner
        if scanner is not None and self.state is State.CLOSING:
            close = scanner.next_frame()
            if close is not None:
                self._scanner = None
                payload = close[1]
                if len(payload) < 2:
                    yield self._closed(1005, "")
                else:
                    reason = payload[2:].decode("utf-8", "replace")
                    yield self._closed(int.from_bytes(payload[:2], "big"), reason)

    def _parsed_events(self) -> Iterator[Event]:
        parser = self._parser
        if parser is None:
            return
        try:
            for frame in parser.received_frames():
                if self.state is State.CLOSED or self._scanner is not None:
                    return
                if frame.frame_finished:
                    self.frames_in += 1
                opcode = frame.opcode
                if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                    message = self._assemble(frame)
                    if message is None:
                        if self._over_limit():
                            yield Closed(End.BAD_INPUT, 1009, "message too big", self._fail(1009))
                            return
                    elif message is _OVERLOADED:
                        yield message
                    else:
                        yield message
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
            if self.state is State.OPEN and _between_messages(parser):
                self._parser = None
        except ParseFailed as exc:  # the peer broke a rule: 1002, or 1007 for UTF-8
            if self.state is State.CLOSING:  # our close is under way: no second one
                self.state = State.CLOSED
                self._drop_message()
                yield Closed(End.BAD_INPUT, int(exc.code), str(exc), None)
            elif self.state is not State.CLOSED:
                code = int(exc.code)
                yield Closed(End.BAD_INPUT, code, str(exc), self._fail(code))

    def _over_limit(self) -> bool:
        return self._cost > self.max_message_size

    def _closed(self, code: int, reason: str) -> Closed:
        was = self.state
        self.state = State.CLOSED
        self._drop_message()
        if was is State.CLOSING:
            return Closed(End.PEER_CLOSED, code, reason, None)
        # §5.5.1: echo the peer's code; a Close without one (1005) gets none back.
        answer = encode_close(None) if code == 1005 else encode_close(code, "")
        return Closed(End.PEER_CLOSED, code, reason, answer)

    def _fail(self, code: int) -> bytes:
        self.state = State.CLOSED
        self._drop_message()
        return encode_close(code, _FAILURE_REASONS.get(code, ""))

    def discard(self) -> None:
        """The connection is gone: forget the message under way and give its
        bytes back to the memory budget (an end of stream yields no event)."""
        self._drop_message()

    def _drop_message(self) -> None:
        """Forget the message under way, and give back the budget it held."""
        if self._deflate is not None:
            self._deflate.inflater.discard()  # its zlib state goes with it
        self._parts = None
        self._cost = 0
        if self._held:
            assert self._budget is not None
            self._budget.release(self._held)
            self._held = 0

    def _assemble(self, frame: Frame) -> Message | Overloaded | None:
        """Add one piece of a message; the whole message once it is finished.

        None while a message is incomplete, or dropped (we are closing, or the
        budget had no room for it), or over the limit (then :meth:`_over_limit`
        is true); :data:`_OVERLOADED` the moment the budget refuses it.
        """
        if self.state is not State.OPEN:
            return None
        if self._dropping:
            self._dropping = not frame.message_finished
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
        budget = self._budget
        if budget is not None:
            if not budget.take(len(payload)):
                self._drop_message()
                self._dropping = not frame.message_finished
                return _OVERLOADED
            self._held += len(payload)
        parts += payload
        if not frame.message_finished:
            return None
        self._parts = None
        self._cost = 0
        body = bytes(parts)
        if self._held:
            assert budget is not None
            budget.release(self._held)
            self._held = 0
        if self._text:
            return Message(body.decode(), encode_payload(OPCODE_TEXT, body))
        return Message(body, encode_payload(OPCODE_BINARY, body))
