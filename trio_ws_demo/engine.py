"""trio-websocket as the server's WebSocket engine, and the one place we work around it.

trio-websocket parses frames (with its UTF-8 checks and 1009 size limit),
answers pings and runs the close handshake, all through its public API
(:func:`trio_websocket.wrap_server_stream`, :meth:`WebSocketRequest.accept`,
:meth:`WebSocketConnection.get_message` and ``aclose``). The transport we hand
it is an :class:`EngineStream`, which keeps the ``trio.abc.Stream`` contract:

* ``receive_some`` first returns the request head the front door already
  read, then reads the socket; every read marks the peer alive for the
  server-wide keepalive;
* ``send_all`` returns once the bytes are written, through the connection's
  :class:`~trio_ws_demo.outbox.Outbox`: the handshake response and pongs at
  the next frame boundary, a close frame after the queue as the close table
  (:mod:`trio_ws_demo.closing`) says;
* ``aclose`` closes the socket.

Workarounds for trio-websocket 0.12, all here, each with a test that fails
without it; a note fit for upstream follows each.

1. **Flush before answering a close.** trio-websocket writes its answer to a
   peer's close frame the moment it reads it, so what the application queued
   before is lost. Because every write goes through the outbox, that answer
   simply waits behind the queue (bounded by ``close_timeout``).
   Test: ``test_messages_then_close_at_once_still_get_their_echoes``.
   *Upstream:* RFC 6455 §5.5.1 lets an endpoint finish sending before it
   answers; an option to defer the reply until queued ``send_message`` calls
   are done would cover it.
2. **Who started the close?** A close frame trio-websocket writes is either
   its answer to the peer's close or its own (1009, message too big), and the
   public API cannot tell them apart when the peer itself closed with 1009.
   We read the wsproto state (``WebSocketConnection._wsproto``, private).
   Test: ``test_a_peers_own_close_code_is_a_normal_close``.
   *Upstream:* ``CloseReason`` could say which side initiated the close.
3. **No close frame after a protocol error.** When wsproto fails to parse a
   frame (1002) or its UTF-8 (1007), trio-websocket closes the stream without
   a close frame. :meth:`EngineStream.aclose` sends it first.
   Test: ``test_protocol_violations_get_the_rfc_close_code`` (1002 and 1007 cases).
   *Upstream:* ``_reader_task`` should send ``CloseConnection`` with the
   parse error's code before ``_close_stream()``.
"""

from __future__ import annotations

from typing import Protocol

import trio
from trio_websocket import WebSocketConnection, wrap_server_stream
from wsproto.connection import ConnectionState

from .closing import CLOSE_TABLE, End
from .frames import encode_close, is_close_frame
from .outbox import Outbox

__all__ = ["EngineStream"]

#: Close codes wsproto reports for frames it could not parse.
_PARSE_ERROR_CODES = frozenset({1002, 1007})


class EndNoter(Protocol):
    """The connection, told why it ends (see :mod:`trio_ws_demo.closing`)."""

    def note_end(self, reason: End) -> None: ...


class EngineStream(trio.abc.Stream):
    """The transport trio-websocket uses for one connection."""

    __slots__ = (
        "_accepting",
        "_close_timeout",
        "_closed",
        "_outbox",
        "_owner",
        "_replay",
        "_transport",
        "closing_for",
        "last_seen",
        "ws",
    )

    def __init__(
        self,
        transport: trio.abc.Stream,
        outbox: Outbox,
        head: bytes,
        close_timeout: float,
        owner: EndNoter,
    ) -> None:
        self._transport = transport
        self._outbox = outbox
        self._replay = head
        self._close_timeout = close_timeout
        self._owner = owner
        self.ws: WebSocketConnection | None = None
        self.closing_for: End | None = None
        """Set by the connection before it asks trio-websocket to close."""
        self.last_seen = trio.current_time()
        """When the peer last sent anything (the keepalive reads this)."""
        self._closed: trio.Event | None = None
        self._accepting: trio.CancelScope | None = None

    async def accept(
        self, nursery: trio.Nursery, max_message_size: int, subprotocol: str | None = None
    ) -> WebSocketConnection | None:
        """Run trio-websocket's server handshake on this stream; its reader joins *nursery*.

        None if wsproto refused a head the front door let through (it has
        answered 400 and closed the stream).
        """
        with trio.CancelScope() as self._accepting:
            request = await wrap_server_stream(
                nursery, self, message_queue_size=1, max_message_size=max_message_size
            )
            self.ws = await request.accept(subprotocol=subprotocol)
        self._accepting = None
        return self.ws

    # -- trio.abc.Stream ------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._replay:
            data, self._replay = self._replay, b""
            await trio.lowlevel.checkpoint()
            return data
        received = await self._transport.receive_some(max_bytes)
        self.last_seen = trio.current_time()
        return received

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if not is_close_frame(data):
            await self._outbox.send_control(bytes(data))
            return
        end = self._close_reason()
        self._owner.note_end(end)
        sent = await self._outbox.send_close(
            bytes(data), flush=CLOSE_TABLE[end].flush, timeout=self._close_timeout
        )
        if not sent:
            raise trio.BrokenResourceError("the close frame could not be sent in time")

    async def wait_send_all_might_not_block(self) -> None:
        await self._transport.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        """Close the connection: trio-websocket calls this, and so does the
        connection once trio-websocket stops delivering messages. The second
        call waits for the first."""
        if self._closed is not None:
            await self._closed.wait()
            return
        self._closed = trio.Event()
        try:
            await self._close()
        finally:
            self._closed.set()

    async def _close(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()  # wsproto refused the request: stop waiting for it
        ws = self.ws
        closed = ws.closed if ws is not None else None
        if (
            closed is not None
            and closed.code in _PARSE_ERROR_CODES
            and self._outbox.close_code_sent is None
            and self._outbox.writable
        ):
            # Workaround 3: wsproto could not parse the peer's frames and
            # trio-websocket is closing without saying why.
            self._owner.note_end(End.BAD_INPUT)
            with trio.move_on_after(self._close_timeout):
                frame = encode_close(closed.code, closed.reason or "")
                await self._outbox.send_close(frame, flush=False, timeout=self._close_timeout)
        await self._outbox.aclose()

    def _close_reason(self) -> End:
        """Why trio-websocket is writing a close frame now (workaround 2)."""
        if self.ws is not None and self.ws._wsproto.state is ConnectionState.CLOSED:
            return End.PEER_CLOSED  # wsproto has read the peer's close: this is the answer
        if self.closing_for is not None:
            return self.closing_for  # we asked for this close
        return End.BAD_INPUT  # trio-websocket's own: a message over the size limit
