"""The one place where the server goes below trio-websocket's public API.

trio-websocket owns the handshake, reading, ping/pong and the close handshake.
Broadcast frames, though, are encoded once (see :mod:`trio_ws_demo.frames`)
and written as bytes, many at a time. :class:`FrameWire` is the transport
stream we hand to trio-websocket, so that both writers share it safely:

* **Serialized writes.** trio-websocket's writes (handshake, pong, close) and
  our frame batches go through one lock, so bytes of two frames never
  interleave. A write that is cancelled part-way leaves the stream *broken*:
  nothing more is written to it, since the peer could not parse it.
* **Replay.** The server reads the HTTP request head itself (see
  :mod:`trio_ws_demo.handshake`); :meth:`replay` hands those bytes to
  trio-websocket as if they had just arrived.
* **Frames only while open.** Once a close frame has gone out, data frames are
  refused (:meth:`write_frames` returns False).
* **Flush before answering a close.** trio-websocket answers a peer's close
  frame at once and closes the socket. RFC 6455 §5.5.1 lets an endpoint first
  finish sending what it has queued, and Node ``ws`` does, so a client that
  sends a message and closes right away still gets its echo. We therefore
  *defer* a close frame that we did not start (see :meth:`begin_local_close`);
  the server flushes the client's inbox, then calls :meth:`finish`, which
  sends the deferred close frame and closes the socket.
* **The server closes the socket**, in :meth:`finish`: trio-websocket's own
  ``aclose()`` calls are only noted. That also lets the server send the close
  frame trio-websocket omits after a protocol error (1002, 1007).
"""

from __future__ import annotations

import contextlib

import trio

from .frames import close_frame_code, is_close_frame

__all__ = ["FrameWire"]


class FrameWire(trio.abc.Stream):
    """A transport stream shared by trio-websocket and the broadcast sender."""

    def __init__(self, transport: trio.abc.Stream) -> None:
        self.transport = transport
        self._write_lock = trio.Lock()
        self._broken = False
        self._close_sent = False
        self._closing_locally = False
        self._deferred_close: bytes | None = None
        self._closed = False
        self._replay = b""
        self._close_requested = False
        self.close_code_sent: int | None = None
        """The code of the close frame this side sent (or deferred), if any."""

    def replay(self, data: bytes) -> None:
        """Serve *data* (bytes already read from the transport) before reading more."""
        self._replay = data

    @property
    def open_for_frames(self) -> bool:
        """True while data frames may still be written."""
        return not (self._close_sent or self._broken or self._closed)

    @property
    def close_requested(self) -> bool:
        """True once trio-websocket has asked for the stream to be closed."""
        return self._close_requested

    def begin_local_close(self) -> None:
        """Mark that the next close frame is ours, to be sent without delay."""
        self._closing_locally = True

    async def write_frames(self, frames: list[bytes]) -> bool:
        """Write pre-encoded frames with one ``send_all``; False if too late."""
        if not self.open_for_frames:
            return False
        await self._write(frames[0] if len(frames) == 1 else b"".join(frames))
        return True

    async def _write(self, data: bytes | bytearray | memoryview) -> None:
        async with self._write_lock:
            if self._broken or self._closed:
                raise trio.BrokenResourceError("the connection is no longer writable")
            try:
                await self.transport.send_all(data)
            except BaseException:
                # Cancelled or failed part-way: the peer may hold half a frame.
                self._broken = True
                raise

    # -- trio.abc.Stream, as used by trio-websocket ---------------------------

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if is_close_frame(data):
            if self.close_code_sent is None:
                self.close_code_sent = close_frame_code(data)
            if not self._closing_locally and self._deferred_close is None:
                self._deferred_close = bytes(data)
                await trio.lowlevel.checkpoint()
                return
            self._close_sent = True
        await self._write(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._replay:
            data, self._replay = self._replay, b""
            await trio.lowlevel.checkpoint()
            return data
        return await self.transport.receive_some(max_bytes)

    async def aclose(self) -> None:
        # trio-websocket closes the stream right after its close frame (or
        # after a protocol error, with no close frame at all). The server
        # closes for real in finish(), once queued frames and the right close
        # frame are out.
        self._close_requested = True
        await trio.lowlevel.checkpoint()

    def defer_close(self, frame: bytes) -> None:
        """Have :meth:`finish` send *frame*, unless a close frame already went out."""
        if self._deferred_close is None and not self._close_sent:
            self.close_code_sent = close_frame_code(frame)
            self._deferred_close = frame

    async def finish(self, timeout: float) -> None:
        """Send a deferred close frame (if any, within *timeout*) and close the socket."""
        deferred, self._deferred_close = self._deferred_close, None
        if deferred is not None and not self._close_sent:
            self._close_sent = True
            with (
                trio.move_on_after(timeout),
                contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
            ):
                await self._write(deferred)
        self._closed = True
        await trio.aclose_forcefully(self.transport)
