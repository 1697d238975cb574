"""TLS after the handshake, driven by hand so that ``wss://`` gets the idle fast path.

Why: :class:`trio.SSLStream` encrypts inside ``send_all``, which must be awaited
in a task and takes a lock; a broadcast to many idle TLS clients then costs a
task switch per client. asyncio's SSL protocol (``asyncio/sslproto.py``) instead
encrypts through an :class:`ssl.SSLObject` with :class:`ssl.MemoryBIO` s and
writes the ciphertext synchronously. We do the same, after the handshake.

What we chose: :class:`trio.SSLStream` still does the TLS handshake (and the
front door reads the HTTP request through it), which keeps its careful
handshake, SNI and error handling. Once the WebSocket is admitted, a
:class:`TlsChannel` takes over *the same* ``SSLObject`` and its two BIOs, so
nothing buffered on either side is lost, and from then on owns them alone:

* :meth:`TlsChannel.seal` encrypts plaintext synchronously (the outbox calls it
  from ``publish()`` for an idle client and writes the ciphertext with a
  non-blocking ``send()``, or from its writer task for a backlog);
* :meth:`TlsChannel.receive_some` decrypts for trio-websocket. Reading can make
  TLS records to send (a TLS 1.3 ``KeyUpdate`` answer, a refused
  renegotiation's alert): they go to ``on_wire``, the outbox, which writes them
  after every record sealed before and before every record sealed after. TLS
  records are sequence-numbered, so ciphertext must reach the socket in the
  order it was made; the outbox is the one writer, so it can keep that order.

Renegotiation (TLS 1.2) is refused (``OP_NO_RENEGOTIATION``): OpenSSL answers
with a warning alert and the connection goes on. TLS 1.3 key updates and
session tickets need nothing special: both are records like any other.

The one private access: ``SSLStream._ssl_object``, ``_incoming``, ``_outgoing``
and ``_delayed_outgoing`` (trio holds a TLS 1.3 server's session tickets back to
send them with the first data; they must go before our first record).
*Upstream note (trio):* a public way to hand over an ``SSLStream`` after
``do_handshake()`` — its SSLObject, BIOs and transport —
or a synchronous ``send_nowait`` that returns what the transport did not take,
would make this module unnecessary.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable

import trio

__all__ = ["TlsChannel", "refuse_renegotiation"]

_READ_SIZE = 64 * 1024


def refuse_renegotiation(context: ssl.SSLContext) -> None:
    """Refuse TLS 1.2 renegotiation on connections made with *context*."""
    context.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)


class TlsChannel(trio.abc.Stream):
    """One connection's TLS after the handshake: sealing for the outbox, and
    decrypting for trio-websocket."""

    __slots__ = ("_delayed", "_incoming", "_outgoing", "_ssl", "on_wire", "transport")

    def __init__(self, handshaken: trio.SSLStream[trio.SocketStream]) -> None:
        self._ssl: ssl.SSLObject = handshaken._ssl_object
        self._incoming: ssl.MemoryBIO = handshaken._incoming
        self._outgoing: ssl.MemoryBIO = handshaken._outgoing
        self.transport: trio.SocketStream = handshaken.transport_stream
        # trio holds back a TLS 1.3 server's session tickets to send them with
        # the first data (see SSLStream._retry): they are ours to send now.
        self._delayed: bytes = getattr(handshaken, "_delayed_outgoing", None) or b""
        handshaken._delayed_outgoing = None
        self.on_wire: Callable[[bytes], None] | None = None
        """Where records made while reading go (the outbox)."""

    @staticmethod
    def can_take_over(stream: trio.abc.Stream) -> bool:
        """True for a handshaken SSLStream over a socket whose state we know how to take."""
        return (
            isinstance(stream, trio.SSLStream)
            and isinstance(stream.transport_stream, trio.SocketStream)
            and all(hasattr(stream, name) for name in ("_ssl_object", "_incoming", "_outgoing"))
        )

    def leftover(self) -> bytes:
        """Records the SSLStream made but has not sent (a TLS 1.3 server's session
        tickets, which trio sends with the first data): to be written first."""
        early, self._delayed = self._delayed, b""
        return early + (self._outgoing.read() if self._outgoing.pending else b"")

    def seal(self, data: bytes | bytearray | memoryview) -> bytes:
        """Encrypt *data*; return the records to write, in order, now.

        Raises :class:`trio.BrokenResourceError` if TLS cannot (it failed while
        reading, say): a plain ``def`` called from ``publish()`` must not throw an
        ``SSLError`` into whoever published.
        """
        try:
            self._ssl.write(data)
        except (ssl.SSLError, ValueError) as exc:
            raise trio.BrokenResourceError(f"TLS cannot send: {exc}") from exc
        return self._outgoing.read()

    def close_notify(self) -> bytes:
        """The TLS close_notify record (best effort; b"" if TLS cannot make one)."""
        with contextlib.suppress(ssl.SSLError, ValueError):
            self._ssl.unwrap()
        return self._outgoing.read() if self._outgoing.pending else b""

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        """Decrypted bytes; b"" once the peer has closed (with or without close_notify)."""
        size = max_bytes or _READ_SIZE
        while True:
            try:
                data = self._ssl.read(size)
            except ssl.SSLWantReadError:
                self._pass_on_records()
                try:
                    received = await self.transport.receive_some(_READ_SIZE)
                except trio.BrokenResourceError:
                    received = b""
                if received:
                    self._incoming.write(received)
                else:
                    self._incoming.write_eof()
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                self._pass_on_records()
                return b""
            except ssl.SSLError as exc:
                self._pass_on_records()
                raise trio.BrokenResourceError(f"TLS error: {exc}") from exc
            self._pass_on_records()
            return data

    def _pass_on_records(self) -> None:
        if self._outgoing.pending and self.on_wire is not None:
            self.on_wire(self._outgoing.read())

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Not for use: every write goes through the connection's outbox, which
        keeps sealed records in order (see :meth:`seal`)."""
        raise RuntimeError("write through the Outbox")

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.transport)
