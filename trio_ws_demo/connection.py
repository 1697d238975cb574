"""One accepted WebSocket connection: its receive loop, its outbox, and how it ends.

A connection is one task and one nursery. The task runs the *receive loop*
(message -> its room, which encodes once and publishes; see
:mod:`trio_ws_demo.rooms`); the nursery holds
trio-websocket's reader task and, only while a backlog is being written, the
outbox's writer task. Nothing else runs per connection: keepalive is one
server-wide task (:mod:`trio_ws_demo.keepalive`) and idle clients are written
to synchronously (:mod:`trio_ws_demo.outbox`).

How a connection ends is decided in one place: :meth:`Connection.note_end`
records the first reason, and :data:`~trio_ws_demo.closing.CLOSE_TABLE` says
what that reason means for the last bytes. An unexpected exception is caught
here, logged once with its traceback, and closes only this connection (1011).
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from .closing import CLOSE_TABLE, End, Sender
from .engine import EngineStream
from .frames import encode_close, encode_frame, payload_length
from .frontdoor import Peer
from .handshake import redact
from .hub import InboxBudget
from .outbox import Outbox
from .rooms import SUBPROTOCOL, Room, Rooms
from .stats import Traffic
from .tls import TlsChannel

__all__ = ["Connection", "ConnectionSettings"]

logger = logging.getLogger("trio_ws_demo.server")


@dataclass(frozen=True)
class ConnectionSettings:
    """The part of the server's options a connection needs (shared by all)."""

    echo: bool
    budget: InboxBudget
    max_message_size: int
    close_timeout: float


class Connection:
    """Runs one WebSocket connection in its room."""

    __slots__ = (
        "_head",
        "_nursery",
        "_room",
        "_rooms",
        "_settings",
        "_since",
        "_started",
        "_stream",
        "_target",
        "_tls",
        "end",
        "engine",
        "messages_in",
        "outbox",
        "peer",
        "pinged_at",
        "raw_socket",
        "room",
        "traffic",
        "v1",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        head: bytes,
        *,
        rooms: Rooms,
        room: str,
        v1: bool = False,
        since: tuple[int, str] | None = None,
        settings: ConnectionSettings,
        traffic: Traffic,
        peer: Peer,
        target: str,
        raw_socket: socket.socket | None = None,
        tls: TlsChannel | None = None,
    ) -> None:
        self._stream = stream
        self.raw_socket = raw_socket
        self._tls = tls
        self._rooms = rooms
        self.room = room
        """The room's name ("" for the default room, path /)."""
        self._room: Room | None = None
        self.v1 = v1
        self._since = since
        self._settings = settings
        self.traffic = traffic
        self.peer = peer
        self._target = target
        self.messages_in = 0
        self.end: End | None = None
        self._nursery: trio.Nursery | None = None
        self.outbox: Outbox | None = None
        self.engine: EngineStream | None = None
        self._started = trio.current_time()
        self.pinged_at = -1.0
        """When the keepalive last pinged this peer."""
        self._head = head

    # -- ways to end, callable from any task (plain defs: they never wait) ------

    def note_end(self, reason: End) -> None:
        """Record why the connection ends; the first reason wins."""
        if self.end is None:
            self.end = reason

    def request_shutdown(self) -> None:
        """Close with 1001 after flushing what is queued."""
        self._close_soon(End.SHUTDOWN)

    def abort(self, reason: End) -> None:
        """Drop the connection now, with no close handshake."""
        self.note_end(reason)
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    @property
    def path(self) -> str:
        """The request target, with any token hidden (for logs)."""
        return redact(self._target)

    # -- for the server-wide keepalive ------------------------------------------

    @property
    def finished(self) -> bool:
        return self.end is not None

    @property
    def failed(self) -> bool:
        """True if an unexpected error ended this connection."""
        return self.end is End.SERVER_ERROR

    @property
    def last_seen(self) -> float:
        return self.engine.last_seen if self.engine is not None else self._started

    def send_ping(self, frame: bytes) -> None:
        if self.outbox is not None:
            self.outbox.send_control_nowait(frame)

    def give_up(self) -> None:
        logger.debug("%s did not answer a ping in time", self.peer)
        self.abort(End.PING_TIMEOUT)

    def slow_consumer(self) -> None:
        """The hub gave up on this client (called inside hub.publish(); the
        outbox has freed the backlog already)."""
        self._close_soon(End.SLOW)

    def _close_soon(self, reason: End, code: int | None = None) -> None:
        if self.end is not None:
            return
        self.note_end(reason)
        self._leave_room()
        if self._nursery is None:
            return  # run() has not begun, and will not
        if self.engine is None or self.engine.ws is None:
            self._nursery.cancel_scope.cancel()  # still in the handshake: no goodbye
            return
        self._nursery.start_soon(self._close, reason, self.engine.ws, code)

    async def _close(self, reason: End, ws: WebSocketConnection, code: int | None) -> None:
        code = code or CLOSE_TABLE[reason].code
        assert self.engine is not None and code is not None
        self.engine.closing_for = reason
        # At most close_timeout to flush (the outbox's bound), then the rest
        # for the peer's answer. trio-websocket closes the socket either way.
        with trio.move_on_after(2 * self._settings.close_timeout):
            await ws.aclose(code, reason.value)

    # -- the connection ---------------------------------------------------------

    async def run(self) -> None:
        """Accept the WebSocket and serve it until it ends; never raises but Cancelled."""
        if self.end is not None:  # shut down before it began
            await trio.aclose_forcefully(self._stream)
            return
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.outbox = Outbox(
                    self._stream,
                    nursery,
                    self._settings.budget,
                    self.traffic,
                    self.raw_socket,
                    owner=self,
                    tls=self._tls,
                )
                self.engine = EngineStream(
                    self._tls or self._stream,
                    self.outbox,
                    self._head,
                    self._settings.close_timeout,
                    self,
                )
                self._head = b""
                # Joined before the handshake response goes out (what the room
                # sends first waits behind it), so that a client that has seen
                # the response misses nothing published after.
                self._room = room = self._rooms.room(self.room)
                self.outbox.preload(room.join(self.outbox, v1=self.v1, since=self._since).frames)
                try:
                    ws = await self.engine.accept(
                        nursery,
                        self._settings.max_message_size,
                        SUBPROTOCOL if self.v1 else None,
                    )
                    if ws is None:
                        self.note_end(End.BAD_INPUT)
                        return
                    self.outbox.opened()
                    self._log_opened()
                    await self._receive_loop(ws, room)
                finally:
                    self._leave_room()
                if ws.closed is not None:  # None: trio-websocket's reader failed
                    if self.engine.closing_for is None:
                        # trio-websocket stopped delivering messages: it answered
                        # a close, sent 1009, hit bad input or lost the peer.
                        # Closing the socket also ends its reader task.
                        await self.engine.aclose()
                    # No reason noted by now: no close frame passed either way.
                    self.note_end(End.PEER_VANISHED)
        except* Exception:
            self.end = End.SERVER_ERROR  # whatever was under way, this is why it ended
            logger.exception("%s: connection handler failed", self.peer)
        finally:
            await self._finish()

    def _leave_room(self) -> None:
        if self._room is not None and self.outbox is not None:
            self._rooms.leave(self._room, self.outbox)
            self._room = None

    async def _receive_loop(self, ws: WebSocketConnection, room: Room) -> None:
        # No bound methods cached in locals: an idle connection sits here,
        # and every object it keeps alive costs memory and GC time.
        outbox = self.outbox
        assert outbox is not None
        echo = self._settings.echo
        traffic = self.traffic
        while True:
            try:
                message = await ws.get_message()
            except ConnectionClosed:
                return
            self.messages_in += 1
            frame = encode_frame(message)
            if isinstance(message, str) and payload_length(frame) > self._settings.max_message_size:
                # trio-websocket counts characters for text; the limit is in bytes.
                self._close_soon(End.BAD_INPUT, 1009)
                return
            traffic.messages_in += 1
            traffic.bytes_in += len(frame)
            if echo:
                room.plain.offer(outbox, frame, len(frame))
            else:
                room.send(message, frame)

    async def _finish(self) -> None:
        outbox = self.outbox
        if outbox is not None:
            rule = CLOSE_TABLE.get(self.end) if self.end else None
            if rule is not None and rule.sender is Sender.SERVER and rule.code is not None:
                tried = self.engine is not None and self.engine.closing_for is not None
                if outbox.close_code_sent is None and outbox.writable and not tried:
                    # An unexpected error stopped the engine: say goodbye
                    # ourselves if the socket still works.
                    with trio.move_on_after(self._settings.close_timeout):
                        assert self.end is not None
                        frame = encode_close(rule.code, self.end.value)
                        await outbox.send_close(
                            frame, flush=False, timeout=self._settings.close_timeout
                        )
            await outbox.aclose()
        else:
            await trio.aclose_forcefully(self._stream)
        self._log_closed()
        # The keepalive may hold this object a little longer: keep it small.
        self._nursery = None
        self.engine = None
        self._stream = None  # type: ignore[assignment]

    # -- logging -----------------------------------------------------------------

    def _log_opened(self) -> None:
        if not logger.isEnabledFor(logging.INFO):
            return
        logger.info(
            "%s connected (path %s, %d clients)",
            self.peer,
            self.path,
            self._room.clients if self._room else 0,
            extra={
                "event": "opened",
                "peer": str(self.peer),
                "path": self.path,
                "room": self.room,
                "clients": self._room.clients if self._room else 0,
            },
        )

    def _log_closed(self) -> None:
        if not logger.isEnabledFor(logging.INFO):
            return
        ws = self.engine.ws if self.engine is not None else None
        closed = ws.closed if ws is not None else None
        outbox = self.outbox
        sent = outbox.close_code_sent if outbox is not None else None
        code = sent if sent is not None else (closed.code if closed else None)
        if self.end in (End.PEER_VANISHED, End.PING_TIMEOUT):
            code = None
        reason = closed.reason if closed and closed.reason else None
        if self.end in (End.SLOW, End.PING_TIMEOUT, End.SERVER_ERROR, End.SHUTDOWN):
            reason = self.end.value
        duration = trio.current_time() - self._started
        slow = self.end is End.SLOW
        delivered = outbox.delivered if outbox is not None else 0
        logger.info(
            "%s disconnected (path %s, code %s%s, %.1f s, %d messages in, %d out; %s)",
            self.peer,
            self.path,
            code if code is not None else "none",
            f" {reason!r}" if reason else "",
            duration,
            self.messages_in,
            delivered,
            self.end.value if self.end else "never opened",
            extra={
                "event": "closed",
                "peer": str(self.peer),
                "path": self.path,
                "end": self.end.name.lower() if self.end else None,
                "code": code,
                "reason": reason,
                "duration_s": round(duration, 3),
                "messages_in": self.messages_in,
                "messages_out": delivered,
                "slow": slow,
            },
        )
