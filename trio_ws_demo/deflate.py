"""Compressing broadcast frames once, and choosing per client which copy it gets.

A broadcast frame is encoded once (:mod:`trio_ws_demo.frames`); with
``--compression stateless`` or ``room`` it may have up to two more encodings,
each made at most once, the first time a client needs it, and shared by every
client that takes it. The seam with the fan-out is one object and one call:

* a room's :class:`FrameStream` turns the raw frame it is about to publish
  into a :class:`SharedFrame` (still the raw ``bytes``, so everything that
  queues, counts or writes frames is unchanged);
* a connection's :class:`ClientDeflate` (only if it agreed permessage-deflate)
  picks the copy it is sent in :meth:`~trio_ws_demo.server.outbox.Outbox.offer`,
  in publish order, and is told when the copy it picked was not taken.

Frames that are not a room's broadcast (history for a joiner, ``joined``,
``resume``, ``ack``, ``error``, echo) are never compressed: RSV1 = 0 leaves a
client's inflate window untouched, which is what keeps the rule below simple.
Payloads under :data:`THRESHOLDS` bytes go out raw for everyone: compressed
on their own they shrink by less than 5 % (64 bytes of chat JSON: 95 %) for
about 9 µs of CPU each; with the room's window even 16 bytes shrink to a
quarter, so ``room``'s threshold is lower (measured with the corpus of
``benchmarks/compression.py``).

**stateless.** Each frame is compressed on its own (a full flush: no
reference to anything before it), by one compressor the whole process
shares, so it costs nothing per room or per connection. Every client that
agreed the extension can read it, whatever its window holds.

**room.** One compressor per stream (a room's plain or v1 frames) with
context takeover: a sync flush per message, ``00 00 ff ff`` stripped, each
message referring back to the room's last 32 KiB. A client can read such a
frame only if its inflater's history ends with the same bytes as the
compressor's. Each stream counts its compressor's *generation* and each
frame's *index* in it, and a client is **in sync** for frame *i* iff

* *i* is 0 (the compressor is new: nothing to refer back to), or
* it took frames 0 … *i*-1 of this generation, each compressed (the room copy
  or the stateless copy: both add the same message to its history), or
* it took the last frames up to *i*-1 compressed, without a gap, and they add
  up to at least the window (32 KiB): the compressor cannot refer further back.

and it can read the room copy at all: it keeps its context (no
``server_no_context_takeover``) and its window is the compressor's (no smaller
``server_max_window_bits``). An in-sync client gets the room copy; any other
gets the stateless copy, which it can always read and which brings it closer
to sync (always compressed for such a client, even where that is a few
bytes larger than the raw frame: a raw frame would not add the message to
its history, and its run would start again). A client that misses a frame
(dropped by its budget, skipped as its own message, raw because its window is
too small for it) starts its run again.

The **resync plan**: a new generation begins whenever a frame's room copy was
taken by nobody (so the compressor never saw that message): the compressor
is dropped, and the next frame is index 0, in sync for everyone. A joiner, or
a client that missed a frame, is in sync again after 32 KiB of the room's
traffic or at the next new generation, whichever comes first; meanwhile it
gets the stateless copy. A room with no in-sync client holds no compressor.

Memory: nothing per connection but :class:`ClientDeflate`'s four numbers.
One stateless compressor per process; one room compressor (window 32 KiB,
``memLevel`` 5: about 150 KiB) per room stream that has an in-sync client.
"""

from __future__ import annotations

import zlib

from .extensions import Agreement, Compression
from .frames import encode_payload, payload_offset

__all__ = ["THRESHOLDS", "ClientDeflate", "FrameStream", "SharedFrame"]

#: Payloads shorter than this go out raw, by mode (see the module docstring).
THRESHOLDS = {Compression.OFF: 0, Compression.STATELESS: 64, Compression.ROOM: 16}

#: The room compressor's window: the largest every client reads by default.
ROOM_WINDOW_BITS = 15
ROOM_WINDOW = 1 << ROOM_WINDOW_BITS
_LEVEL = 6
_MEM_LEVEL = 5
_TAIL = b"\x00\x00\xff\xff"


class _Stateless:
    """The process's one compressor for frames compressed on their own: a full
    flush after each, so nothing it writes refers to anything before it."""

    compressor: zlib._Compress | None = None

    @classmethod
    def compress(cls, payload: bytes) -> bytes:
        if cls.compressor is None:
            cls.compressor = zlib.compressobj(_LEVEL, zlib.DEFLATED, -15, _MEM_LEVEL)
        data = cls.compressor.compress(payload) + cls.compressor.flush(zlib.Z_FULL_FLUSH)
        return data[:-4] if data.endswith(_TAIL) else data


class SharedFrame(bytes):
    """A broadcast frame: its raw encoding (this ``bytes``), and the compressed
    copies made the first time a client needs each."""

    stream: FrameStream
    generation: int
    seq: int
    """Its place in its generation (0: the first, which refers to nothing before it)."""
    size: int
    """The uncompressed payload's length: what this frame adds to an inflater's history."""
    room_taken: bool
    """Some client took the room copy (so the room compressor has this message)."""
    _stateless: bytes | None
    _room: bytes | None

    def stateless(self, *, or_raw: bool = True) -> bytes:
        """The frame compressed on its own; with *or_raw*, the raw frame instead
        if that is no larger."""
        if self._stateless is None:
            start = payload_offset(self)
            payload = _Stateless.compress(self[start:])
            self._stateless = encode_payload(self[0] & 0x0F, payload, compressed=True)
        if or_raw and len(self._stateless) >= len(self):
            return self
        return self._stateless

    def room(self) -> bytes:
        """The frame compressed by its room's compressor (which then has it)."""
        if self._room is None:
            self._room = self.stream.compress(self)
        self.room_taken = True
        return self._room


class FrameStream:
    """The frames one hub of a room publishes, as the compression mode shapes them."""

    __slots__ = ("_compressor", "_generation", "_last", "_next", "_threshold", "mode")

    def __init__(self, mode: Compression) -> None:
        self.mode = mode
        self._threshold = THRESHOLDS[mode]
        self._compressor: zlib._Compress | None = None
        self._generation = 0
        self._next = 0
        """The index the next frame of this generation gets."""
        self._last: SharedFrame | None = None

    def share(self, frame: bytes) -> bytes:
        """What to publish for *frame*: itself (compression off, or too small to
        pay), or a :class:`SharedFrame`. Call right before publishing it."""
        if self.mode is Compression.OFF or len(frame) - payload_offset(frame) < self._threshold:
            return frame
        shared = SharedFrame(frame)
        shared._stateless = shared._room = None
        shared.room_taken = False
        shared.stream = self
        shared.size = len(frame) - payload_offset(frame)
        last = self._last
        if last is not None and not last.room_taken:
            self._new_generation()  # the compressor never saw that message
        shared.generation, shared.seq = self._generation, self._next
        self._next += 1
        self._last = shared
        return shared

    def _new_generation(self) -> None:
        self._compressor = None
        self._generation += 1
        self._next = 0

    def compress(self, frame: SharedFrame) -> bytes:
        """*frame* through the room compressor, which has every frame of its
        generation before it (a frame nobody took began a new generation)."""
        assert frame.generation == self._generation and frame is self._last
        if self._compressor is None:
            assert frame.seq == 0
            self._compressor = zlib.compressobj(
                _LEVEL, zlib.DEFLATED, -ROOM_WINDOW_BITS, _MEM_LEVEL
            )
        payload = frame[payload_offset(frame) :]
        data = self._compressor.compress(payload) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        return encode_payload(frame[0] & 0x0F, data[:-4], compressed=True)

    @property
    def holds_compressor(self) -> bool:
        return self._compressor is not None


class ClientDeflate:
    """One connection's side of outbound compression: which copy of each
    broadcast frame it gets, and whether its inflater is in step with its
    room's compressor (see the module docstring for the rule)."""

    __slots__ = ("_generation", "_next", "_room_ok", "_run", "_whole", "_window")

    def __init__(self, agreement: Agreement) -> None:
        self._window = 1 << agreement.window_bits
        self._room_ok = agreement.takeover and agreement.window_bits >= ROOM_WINDOW_BITS
        self._generation = -1
        self._next = -1
        self._run = 0
        """Bytes of the room's messages this client took compressed, in a row."""
        self._whole = False
        """Its run began at its generation's first frame."""

    def pick(self, frame: bytes) -> bytes:
        """The copy of *frame* to send this client (the raw one unless it is shared)."""
        if type(frame) is not SharedFrame:
            return frame
        if frame.size > self._window:
            self.missed()  # its window is too small for this message: raw
            return frame
        if not self._room_ok or frame.stream.mode is not Compression.ROOM:
            chosen = frame.stateless()
            if chosen is frame:
                self.missed()
            return chosen
        contiguous = frame.generation == self._generation and frame.seq == self._next
        if frame.seq == 0 or (contiguous and (self._whole or self._run >= ROOM_WINDOW)):
            chosen = frame.room()
        else:
            chosen = frame.stateless(or_raw=False)  # compressed: its history gets the message
        if contiguous:
            self._run += frame.size
        else:
            self._generation, self._run = frame.generation, frame.size
            self._whole = frame.seq == 0
        self._next = frame.seq + 1
        return chosen

    def missed(self) -> None:
        """The copy just picked was not sent (over budget, too late): out of sync."""
        self._generation = -1
