"""One connection's socket: the only code that reads or writes it after the front door.

Plain TCP or TLS, behind one small interface the connection and its outbox use:

* :meth:`Transport.receive`: the next bytes from the peer (decrypted under
  TLS), or ``b""`` once it has closed. On plain TCP it reads the stdlib socket
  directly, with trio's readiness wait, and the connection's reader uses the
  two halves of that itself (:meth:`Transport.receive_nowait`, a plain def,
  and :meth:`Transport.readable`, trio's own wait): an idle connection then
  waits in the shortest call chain there is, which is most of what an idle
  connection costs;
* :meth:`Transport.to_wire` (plaintext → what goes on the wire: the same
  bytes, or TLS records sealed now) and :meth:`Transport.send_nowait` (a
  non-blocking ``send()``, for the outbox's idle fast path), and
  :meth:`Transport.send_all` for a backlog;
* the end: :meth:`send_eof` (half-close, plain TCP), :meth:`close_notify`
  and :meth:`aclose`.

What to write when, in which order, is the outbox's policy
(:mod:`trio_ws_demo.server.outbox`); this module only moves bytes.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Awaitable

import trio

from .tls import TlsChannel

__all__ = ["READ_SIZE", "Transport"]

#: Bytes asked of the socket per read.
READ_SIZE = 64 * 1024

_Bytes = bytes | bytearray | memoryview


class Transport:
    """A connection's byte stream, plain or TLS, with a synchronous send for the fast path."""

    __slots__ = ("_wire", "socket", "stream", "tls")

    def __init__(
        self,
        stream: trio.abc.Stream,
        raw_socket: socket.socket | None = None,
        tls: TlsChannel | None = None,
    ) -> None:
        self.stream = stream
        """What the front door read from: the socket stream, or the TlsChannel."""
        self.tls = tls
        self.socket = raw_socket
        """The stdlib socket under it, for synchronous sends (under TLS it gets
        records); None where there is none (memory streams in tests)."""
        self._wire: trio.abc.SendStream = stream if tls is None else tls.transport

    # -- reading -----------------------------------------------------------------

    async def receive(self) -> bytes | bytearray:
        """The next bytes from the peer; b"" once it has closed (or vanished)."""
        if not self.direct:
            source = self.tls or self.stream
            try:
                return await source.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return b""
        # As trio's own socket methods do: a checkpoint whether or not data waits.
        await trio.lowlevel.checkpoint_if_cancelled()
        data = self.receive_nowait()
        if data is not None:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return data
        while data is None:
            await self.readable()
            data = self.receive_nowait()
        return data

    @property
    def direct(self) -> bool:
        """Plain TCP on a stdlib socket: :meth:`receive_nowait` and :meth:`readable` work."""
        return self.tls is None and self.socket is not None

    def receive_nowait(self) -> bytes | None:
        """If :attr:`direct`: what the kernel holds now, b"" once the peer has
        closed (or reset), None if nothing has come yet.

        A plain def, so that the exception a socket with nothing to read raises
        never passes through a coroutine: it would give that coroutine a frame
        object (200 bytes, for as long as the connection is open)."""
        assert self.socket is not None
        try:
            return self.socket.recv(READ_SIZE)
        except BlockingIOError:
            return None
        except OSError:  # a reset: the same as an end without a close frame
            return b""

    def readable(self) -> Awaitable[None]:
        """If :attr:`direct`: wait until :meth:`receive_nowait` has something to
        say. A plain def that hands back trio's own wait, so that an idle reader
        awaiting it has no frame of ours between it and the kernel."""
        assert self.socket is not None
        return trio.lowlevel.wait_readable(self.socket)  # noqa: ASYNC105 (the caller awaits it)

    # -- writing -----------------------------------------------------------------

    def to_wire(self, data: _Bytes) -> _Bytes:
        """What goes on the wire for plaintext *data*: itself, or TLS records made now.

        Raises :class:`trio.BrokenResourceError` if TLS cannot seal any more.
        """
        return data if self.tls is None else self.tls.seal(data)

    def send_nowait(self, wire: _Bytes) -> int:
        """Give *wire* to the kernel without waiting; how many bytes it took
        (0 when full, or failing: the next awaited write will say)."""
        assert self.socket is not None
        try:
            return self.socket.send(wire)
        except OSError:
            return 0

    async def send_all(self, wire: _Bytes) -> None:
        await self._wire.send_all(wire)

    # -- the end -------------------------------------------------------------------

    async def send_eof(self) -> None:
        """On plain TCP: tell the peer we send no more (best effort). Under TLS
        the close_notify at :meth:`close_notify` says it."""
        stream = self.stream
        if self.tls is None and isinstance(stream, trio.abc.HalfCloseableStream):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_eof()

    def close_notify(self) -> None:
        """Send TLS close_notify now if the kernel takes it (best effort, never waits)."""
        if self.tls is not None and self.socket is not None:
            with contextlib.suppress(OSError):
                self.socket.send(self.tls.close_notify())

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)
