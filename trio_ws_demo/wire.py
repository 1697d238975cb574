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
* **Synchronous fast path.** When nothing is queued for a client and no write
  is under way, :meth:`try_write_now` hands a broadcast frame straight to the
  kernel with a non-blocking ``socket.send()``, the way Node does, and skips
  the task switch to the send loop. Whatever the kernel did not take is
  returned to be queued first; until the send loop has written that rest, no
  other write (pong, close) may start, so frames never interleave.
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
import socket

import trio

from .frames import close_frame_code, is_close_frame

__all__ = ["FrameWire"]


class FrameWire(trio.abc.Stream):
    """A transport stream shared by trio-websocket and the broadcast sender."""

    def __init__(self, transport: trio.abc.Stream, raw_socket: socket.socket | None = None) -> None:
        self.transport = transport
        self._raw_socket = raw_socket
        """The plain (non-TLS) socket under *transport*, for the fast path."""
        self._mid_frame = False
        self._frame_finished = trio.Event()
        self._write_lock = trio.Lock()
        self._broken = False
        self._close_sent = False
        self._closing_locally = False
        self._deferred_close: bytes | None = None
        self._closed = False
        self._replay = b""
        self.close_code_sent: int | None = None
        """The code of the close frame this side sent (or deferred), if any."""

    def replay(self, data: bytes) -> None:
        """Serve *data* (bytes already read from the transport) before reading more."""
        self._replay = data

    @property
    def open_for_frames(self) -> bool:
        """True while data frames may still be written."""
        return not (self._close_sent or self._broken or self._closed)

    def begin_local_close(self) -> None:
        """Mark that the next close frame is ours, to be sent without delay."""
        self._closing_locally = True

    def try_write_now(self, frame: bytes) -> bytes | None:
        """Write *frame* without waiting if the socket is free; return what is left.

        Returns None when the kernel took all of it, else the bytes still to
        be written, which the caller must queue ahead of anything else. Only
        call this when nothing is queued for this connection.
        """
        if (
            self._raw_socket is None
            or self._write_lock.locked()
            or self._mid_frame
            or not self.open_for_frames
        ):
            return frame
        try:
            sent = self._raw_socket.send(frame)
        except OSError:  # full (BlockingIOError) or failing: the send loop will see it
            return frame
        if sent == len(frame):
            return None
        if sent:
            self._mid_frame = True
            self._frame_finished = trio.Event()
        return frame[sent:]

    async def write_frames(self, frames: list[bytes]) -> bool:
        """Write pre-encoded frames with one ``send_all``; False if too late.

        A frame left half-written by :meth:`try_write_now` must come first.
        """
        if not self.open_for_frames:
            return False
        await self._write(frames[0] if len(frames) == 1 else b"".join(frames))
        if self._mid_frame:
            self._mid_frame = False
            self._frame_finished.set()
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
                self._frame_finished.set()
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
        while self._mid_frame and not self._broken:
            await self._frame_finished.wait()
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
        await trio.lowlevel.checkpoint()

    def defer_close(self, frame: bytes) -> None:
        """Have :meth:`finish` send *frame*, unless a close frame already went out."""
        if self._deferred_close is None and not self._close_sent:
            self.close_code_sent = close_frame_code(frame)
            self._deferred_close = frame

    async def finish(self, timeout: float) -> None:
        """Send a deferred close frame (if any, within *timeout*) and close the socket."""
        deferred, self._deferred_close = self._deferred_close, None
        # Never after half a frame: the peer would read the close as payload.
        if deferred is not None and not self._close_sent and not self._mid_frame:
            self._close_sent = True
            with (
                trio.move_on_after(timeout),
                contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
            ):
                await self._write(deferred)
        self._closed = True
        await trio.aclose_forcefully(self.transport)
