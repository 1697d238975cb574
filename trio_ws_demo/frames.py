"""Encoding WebSocket data frames once, for every receiver.

Server-to-client frames are never masked (RFC 6455 §5.1), so the bytes of a
broadcast frame are the same for every client: one raw encoding, and at most
one more per permessage-deflate variant (:mod:`trio_ws_demo.deflate`), each
made once and shared. Encoding once per broadcast instead of once per client
is the single biggest saving in fan-out (wsproto takes microseconds per frame).
"""

from __future__ import annotations

import struct

__all__ = [
    "OPCODE_BINARY",
    "OPCODE_CLOSE",
    "OPCODE_TEXT",
    "PING_FRAME",
    "FrameScanner",
    "close_frame_code",
    "encode_close",
    "encode_frame",
    "encode_payload",
    "frame_message",
    "is_close_frame",
    "payload_length",
    "payload_offset",
]

OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
OPCODE_CLOSE = 0x8
OPCODE_PING = 0x9
_FIN = 0x80
#: RSV1 on a message's first frame: its payload is compressed (RFC 7692 §6).
_RSV1 = 0x40

#: An unmasked ping with no payload: what the keepalive sends (§5.5.2).
PING_FRAME = bytes([_FIN | OPCODE_PING, 0])

_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


def encode_frame(message: str | bytes) -> bytes:
    """Return one unmasked, final frame carrying *message*.

    ``str`` becomes a text frame (UTF-8), ``bytes`` a binary frame.
    """
    if isinstance(message, str):
        return encode_payload(OPCODE_TEXT, message.encode("utf-8"))
    return encode_payload(OPCODE_BINARY, bytes(message))


def encode_payload(opcode: int, payload: bytes, *, compressed: bool = False) -> bytes:
    """One unmasked, final frame of *opcode* carrying *payload* as it is; with
    *compressed*, RSV1 says the payload is permessage-deflate data."""
    first = _FIN | opcode | (_RSV1 if compressed else 0)
    length = len(payload)
    if length < 126:
        header = _SHORT.pack(first, length)
    elif length < 1 << 16:
        header = _MEDIUM.pack(first, 126, length)
    else:
        header = _LONG.pack(first, 127, length)
    return header + payload


def encode_close(code: int | None, reason: str = "") -> bytes:
    """An unmasked close frame with *code* and a reason trimmed to fit (§5.5);
    with no code, an empty close frame (the answer to a Close without one)."""
    if code is None:
        return _SHORT.pack(_FIN | OPCODE_CLOSE, 0)
    payload = code.to_bytes(2, "big") + _trim_utf8(reason.encode("utf-8"), 123)
    return _SHORT.pack(_FIN | OPCODE_CLOSE, len(payload)) + payload


def close_frame_code(frame: bytes | bytearray | memoryview) -> int | None:
    """The status code of an unmasked close frame, or None if it carries none."""
    if len(frame) >= 4 and frame[1] & 0x7F >= 2:
        return int.from_bytes(frame[2:4], "big")
    return None


def payload_length(frame: bytes) -> int:
    """The payload length an unmasked frame's header declares."""
    length = frame[1] & 0x7F
    if length == 126:
        return int(_MEDIUM.unpack_from(frame)[2])
    if length == 127:
        return int(_LONG.unpack_from(frame)[2])
    return length


def payload_offset(frame: bytes) -> int:
    """Where an unmasked frame's payload begins (its header's length)."""
    length = frame[1] & 0x7F
    return 2 if length < 126 else 4 if length == 126 else 10


def frame_message(frame: bytes) -> str | bytes:
    """The message an unmasked, final text or binary frame carries."""
    length = frame[1] & 0x7F
    start = 2 if length < 126 else 4 if length == 126 else 10
    payload = frame[start:]
    return payload.decode("utf-8") if frame[0] & 0x0F == OPCODE_TEXT else payload


def is_close_frame(data: bytes | bytearray | memoryview) -> bool:
    """True if *data* starts with an unfragmented close frame header."""
    return len(data) > 0 and data[0] == _FIN | OPCODE_CLOSE


def _trim_utf8(data: bytes, limit: int) -> bytes:
    """*data* cut to at most *limit* bytes without splitting a UTF-8 character."""
    if len(data) <= limit:
        return data
    return data[:limit].decode("utf-8", "ignore").encode("utf-8")


class FrameScanner:
    """Frames read by their headers alone: the payloads of frames nobody wants
    are skipped unread (not unmasked, not decoded, not kept), and a wanted frame,
    a control frame of at most 125 bytes, is returned whole, unmasked.

    The client spots the server's pings and pongs with it; the server finds the
    peer's Close with it once its own close is under way, so that a flood then
    costs one header per frame. Nothing skipped is checked: it is not used.
    """

    __slots__ = ("_buffer", "_skip", "_wanted")

    def __init__(self, wanted: frozenset[int], leftover: bytes | bytearray = b"", skip: int = 0):
        self._wanted = wanted
        self._buffer = bytearray(leftover)
        self._skip = skip
        """Bytes of the current frame's payload still to pass over."""

    def feed(self, data: bytes | bytearray) -> None:
        if self._skip >= len(data) and not self._buffer:
            self._skip -= len(data)  # inside a skipped payload: nothing is kept
            return
        self._buffer += data

    def next_frame(self) -> tuple[int, bytes] | None:
        """The next wanted frame (opcode, payload) once all of it is here."""
        buffer = self._buffer
        while True:
            if self._skip:
                skipped = min(self._skip, len(buffer))
                del buffer[:skipped]
                self._skip -= skipped
                if self._skip:
                    return None
            if len(buffer) < 2:
                return None
            opcode, short, masked = buffer[0] & 0x0F, buffer[1] & 0x7F, buffer[1] & 0x80
            start = 2 + (2 if short == 126 else 8 if short == 127 else 0)
            if len(buffer) < start:
                return None
            length = short if short < 126 else int.from_bytes(buffer[2:start], "big")
            if masked:
                start += 4
            if opcode not in self._wanted:
                if len(buffer) < start:
                    return None
                del buffer[:start]
                self._skip = length
                continue
            if len(buffer) < start + length:
                return None
            payload = bytearray(buffer[start : start + length])
            if masked:
                mask = buffer[start - 4 : start]
                for index in range(len(payload)):
                    payload[index] ^= mask[index % 4]
            del buffer[: start + length]
            return opcode, bytes(payload)
