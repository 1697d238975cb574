"""TLS for ``wss://``, driven by hand from the handshake on, so that it gets the idle fast path.

Why: :class:`trio.SSLStream` encrypts inside ``send_all``, which must be awaited
in a task and takes a lock; a broadcast to many idle TLS clients then costs a
task switch per client. asyncio's SSL protocol (``asyncio/sslproto.py``) instead
runs TLS through an :class:`ssl.SSLObject` with two :class:`ssl.MemoryBIO` s
and writes the ciphertext synchronously. We do the same, from the first byte:

* :meth:`TlsChannel.do_handshake` runs the server handshake over the socket
  (the front door bounds its time); a TLS error becomes
  :class:`trio.BrokenResourceError`, with its reason, like a lost peer;
* the front door then reads the request head through
  :meth:`TlsChannel.receive_some` and writes its answers with
  :meth:`TlsChannel.send_all`; once a WebSocket is admitted, the connection's
  outbox is the only writer:
* :meth:`TlsChannel.seal` encrypts plaintext synchronously (the outbox calls it
  from ``publish()`` for an idle client and writes the ciphertext with a
  non-blocking ``send()``, or from its writer task for a backlog);
* reading can make TLS records to send (a TLS 1.3 ``KeyUpdate`` answer, a
  refused renegotiation's alert): they go to ``on_wire``, the outbox, which
  writes them after every record sealed before and before every record sealed
  after. TLS records are sequence-numbered, so ciphertext must reach the socket
  in the order it was made; the outbox is the one writer, so it can keep that
  order (and bounds how many such records may wait).

Renegotiation (TLS 1.2) is refused (``OP_NO_RENEGOTIATION``): OpenSSL answers
with a warning alert and the connection goes on. TLS 1.3 key updates and
session tickets need nothing special: both are records like any other. No
private attribute of trio or ssl is touched.
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
    """One connection's TLS: its handshake, then sealing for the outbox and
    decrypting for the reader."""

    __slots__ = ("_bio_in", "_bio_out", "_ssl", "on_wire", "transport")

    def __init__(self, transport: trio.SocketStream, context: ssl.SSLContext) -> None:
        self._bio_in = ssl.MemoryBIO()
        self._bio_out = ssl.MemoryBIO()
        self._ssl: ssl.SSLObject = context.wrap_bio(self._bio_in, self._bio_out, server_side=True)
        self.transport = transport
        self.on_wire: Callable[[bytes], None] | None = None
        """Where records made while reading go, once the outbox owns the writes."""

    async def do_handshake(self) -> None:
        """The server side of the TLS handshake; BrokenResourceError if it fails."""
        while True:
            try:
                self._ssl.do_handshake()
            except ssl.SSLWantReadError:
                await self._flush()
                data = await self.transport.receive_some(_READ_SIZE)
                if not data:
                    raise trio.BrokenResourceError(
                        "the peer closed during the TLS handshake"
                    ) from None
                self._bio_in.write(data)
            except (ssl.SSLError, ValueError) as exc:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self._flush()  # the alert that says why, if the peer still listens
                raise trio.BrokenResourceError(f"TLS handshake failed: {exc}") from exc
            else:
                await self._flush()  # the last handshake records, and session tickets
                return

    async def _flush(self) -> None:
        if self._bio_out.pending:
            await self.transport.send_all(self._bio_out.read())

    def leftover(self) -> bytes:
        """Records made but not yet sent: to be written first by the outbox."""
        return self._bio_out.read() if self._bio_out.pending else b""

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
        return self._bio_out.read()

    def close_notify(self) -> bytes:
        """The TLS close_notify record (best effort; b"" if TLS cannot make one)."""
        with contextlib.suppress(ssl.SSLError, ValueError):
            self._ssl.unwrap()
        return self._bio_out.read() if self._bio_out.pending else b""

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        """Decrypted bytes; b"" once the peer has closed (with or without close_notify)."""
        size = max_bytes or _READ_SIZE
        while True:
            try:
                data = self._ssl.read(size)
            except ssl.SSLWantReadError:
                await self._pass_on_records()
                try:
                    received = await self.transport.receive_some(_READ_SIZE)
                except trio.BrokenResourceError:
                    received = b""
                if received:
                    self._bio_in.write(received)
                else:
                    self._bio_in.write_eof()
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                await self._pass_on_records()
                return b""
            except ssl.SSLError as exc:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self._pass_on_records()  # the alert that says why
                raise trio.BrokenResourceError(f"TLS error: {exc}") from exc
            await self._pass_on_records()
            return data

    async def _pass_on_records(self) -> None:
        """Records reading made (an alert, a key-update answer): to the outbox once
        it owns the writes, else (the front door reading the head) out now."""
        if not self._bio_out.pending:
            return
        if self.on_wire is not None:
            self.on_wire(self._bio_out.read())
        else:
            await self.transport.send_all(self._bio_out.read())

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Seal and write *data*: for the front door's answers, before a connection
        exists. After that every write goes through the connection's outbox, which
        keeps sealed records in order with those it writes from ``publish()``."""
        await self.transport.send_all(self.seal(data))

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.transport)
