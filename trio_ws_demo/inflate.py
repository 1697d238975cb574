"""Inflating what a client sends, never past ``max_message_size``.

A compressed message can inflate a thousandfold: a 1 KiB frame may hold a
megabyte of zeros. So the bound applies to what comes *out*: every call to
zlib asks for at most one byte more than the message may still grow
(``decompressobj.decompress(data, max_length)``), and a message that would
grow past the bound fails with 1009 having produced at most ``limit + 1``
bytes. Input that zlib did not get to (``unconsumed_tail``) is never
inflated: the connection is failing.

The client agreed ``client_no_context_takeover`` (see
:mod:`trio_ws_demo.extensions`), so each message has a decompressor of its
own, made at its first frame and dropped at its last: between messages a
connection holds no compression state. While a compressed message is being
read, zlib holds its window (32 KiB) and about 7 KiB of tables; that is the
whole per-connection cost.
"""

from __future__ import annotations

import zlib

from .errors import TrioWsDemoError

__all__ = ["Inflater", "TooBig"]

#: What RFC 7692 §7.2.2 has the sender strip from a message's end, and the
#: receiver add back before it inflates the last piece.
_TAIL = b"\x00\x00\xff\xff"


class TooBig(TrioWsDemoError):
    """The message inflates to more than the bound: fail with 1009. (Raised and
    caught inside the protocol; a :class:`TrioWsDemoError` like every error of ours.)"""


class Inflater:
    """One connection's inbound permessage-deflate: a message at a time."""

    __slots__ = ("_inflated", "_zlib", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        """The most a message may inflate to (``max_message_size``)."""
        self._zlib: zlib._Decompress | None = None
        self._inflated = 0

    @property
    def active(self) -> bool:
        """A compressed message is under way (its decompressor exists)."""
        return self._zlib is not None

    def start(self) -> None:
        """A compressed message begins (its first frame had RSV1)."""
        self._zlib = zlib.decompressobj(-15)
        self._inflated = 0

    def feed(self, data: bytes) -> bytes:
        """Inflate one piece of the message: ``TooBig`` past the limit,
        ``zlib.error`` for data that is not deflate."""
        assert self._zlib is not None
        return self._bounded(data)

    def finish(self) -> bytes:
        """The message's last bytes (the stripped tail added back), then forget it."""
        assert self._zlib is not None
        try:
            return self._bounded(_TAIL)
        finally:
            self._zlib = None

    def discard(self) -> None:
        """Forget the message under way (the connection is failing or closing)."""
        self._zlib = None

    def _bounded(self, data: bytes) -> bytes:
        assert self._zlib is not None
        room = self.limit - self._inflated
        # One byte more than fits: getting it is how we know the message is too big.
        out = self._zlib.decompress(data, room + 1)
        self._inflated += len(out)
        if len(out) > room:
            self._zlib = None
            raise TooBig(f"message inflates to more than {self.limit} bytes")
        return out
