"""One accepted WebSocket connection, from the handshake to the last byte.

A session owns three tasks in its own nursery: the *receive loop* (message ->
encode once -> hub), the *send loop* (inbox -> socket, many frames per write)
and, when enabled, *keepalive* (ping, and give up on a silent peer).

A session ends for one of these reasons, each with its own way out:

=================  ========================================================
``PEER_CLOSED``    flush what is queued, then answer the close (§5.5.1)
``SLOW``           drop the backlog, finish the write under way, close 1008
``SHUTDOWN``       flush what is queued, close 1001 ``server shutting down``
``PING_TIMEOUT``   the peer is gone: release everything at once
``BAD_INPUT``      the peer broke the protocol (1002, 1007) or sent too
                   much (1009): close with that code at once, no flush
=================  ========================================================
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from .frames import encode_close, encode_frame
from .hub import Hub, Subscription
from .wire import FrameWire

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_SLOW_CONSUMER",
    "EndReason",
    "Session",
    "SessionSettings",
    "Traffic",
]

logger = logging.getLogger("trio_ws_demo.server")

CLOSE_GOING_AWAY = 1001
CLOSE_SLOW_CONSUMER = 1008


class EndReason(enum.Enum):
    PEER_CLOSED = "peer closed"
    SLOW = "slow consumer"
    SHUTDOWN = "server shutting down"
    PING_TIMEOUT = "ping timeout"
    BAD_INPUT = "bad input"


#: Close codes for input the server refuses: protocol error, invalid data, too big.
BAD_INPUT_CODES = frozenset({1002, 1007, 1009})


@dataclass
class Traffic:
    """Server-wide counters the sessions add to (read by /metrics)."""

    messages_in: int = 0
    bytes_in: int = 0


@dataclass(frozen=True)
class SessionSettings:
    """The part of the server's options a session needs."""

    echo: bool
    close_timeout: float
    ping_interval: float | None
    ping_timeout: float


class Session:
    """Runs one WebSocket connection against the hub."""

    def __init__(
        self,
        ws: WebSocketConnection,
        wire: FrameWire,
        hub: Hub[bytes],
        settings: SessionSettings,
        peer: str,
        path: str,
        traffic: Traffic | None = None,
    ) -> None:
        self.ws = ws
        self.wire = wire
        self.hub = hub
        self.settings = settings
        self.peer = peer
        self.path = path
        self.messages_in = 0
        self.traffic = traffic or Traffic()
        self.end: EndReason | None = None
        self._started = 0.0
        self._receiving = trio.CancelScope()
        self._tasks: trio.CancelScope | None = None
        self.inbox: Subscription[bytes] = hub.subscribe(
            on_slow=self._on_slow, deliver_now=wire.try_write_now
        )

    # -- ways to end, callable from other tasks (plain defs: they never wait) --

    def request_shutdown(self) -> None:
        """Close with 1001 after flushing what is queued."""
        self._finish(EndReason.SHUTDOWN)

    def _on_slow(self) -> None:
        # Called from inside hub.publish(): free the backlog now and give the
        # write under way close_timeout to finish, so that a 1008 can follow.
        self.inbox.discard_queued()
        self._finish(EndReason.SLOW)
        if self._tasks is not None:
            self._tasks.deadline = trio.current_time() + self.settings.close_timeout

    def _finish(self, reason: EndReason) -> None:
        if self.end is None:
            self.end = reason
        self._receiving.cancel()

    # -- the session ------------------------------------------------------------

    async def run(self) -> None:
        self._started = trio.current_time()
        logger.info(
            "%s connected (path %s, %d clients)",
            self.peer,
            self.path,
            len(self.hub),
            extra={
                "event": "opened",
                "peer": self.peer,
                "path": self.path,
                "clients": len(self.hub),
            },
        )
        try:
            async with trio.open_nursery() as tasks:
                self._tasks = tasks.cancel_scope
                tasks.start_soon(self._send_loop)
                keepalive = trio.CancelScope()
                if self.settings.ping_interval:
                    tasks.start_soon(self._keepalive, keepalive)
                with self._receiving:
                    await self._receive_loop()
                keepalive.cancel()
                self.inbox.close()
                if self.end is None:
                    self.end = self._why_closed()
                if self.end in (EndReason.PING_TIMEOUT, EndReason.BAD_INPUT):
                    tasks.cancel_scope.cancel()
                elif self.end is not EndReason.SLOW:
                    # Let the send loop flush what is queued before the close frame.
                    tasks.cancel_scope.deadline = min(
                        tasks.cancel_scope.deadline,
                        trio.current_time() + self.settings.close_timeout,
                    )
            if self.end is EndReason.SLOW:
                await self._close(CLOSE_SLOW_CONSUMER, "slow consumer")
            elif self.end is EndReason.SHUTDOWN:
                await self._close(CLOSE_GOING_AWAY, "server shutting down")
        finally:
            self.inbox.discard_queued()
            self._log_closed()

    def _why_closed(self) -> EndReason:
        """After trio-websocket ended the connection: the peer's close, or bad input?"""
        closed = self.ws.closed
        code = self.wire.close_code_sent or (closed.code if closed else None)
        if code not in BAD_INPUT_CODES:
            return EndReason.PEER_CLOSED
        if self.wire.close_code_sent is None and closed is not None:
            # wsproto reported a protocol error; trio-websocket sent no close frame.
            self.wire.defer_close(encode_close(closed.code, closed.reason or ""))
        logger.debug("%s sent bad input: %s", self.peer, closed.reason if closed else code)
        return EndReason.BAD_INPUT

    async def _close(self, code: int, reason: str) -> None:
        logger.debug("%s: closing with %d (%s)", self.peer, code, reason)
        self.wire.begin_local_close()
        with trio.move_on_after(self.settings.close_timeout):
            await self.ws.aclose(code, reason)

    async def _receive_loop(self) -> None:
        ws = self.ws
        inbox = self.inbox
        publish = self.hub.publish
        echo = self.settings.echo
        traffic = self.traffic
        while True:
            try:
                message = await ws.get_message()
            except ConnectionClosed:
                return
            self.messages_in += 1
            frame = encode_frame(message)
            traffic.messages_in += 1
            traffic.bytes_in += len(frame)
            if echo:
                inbox.offer(frame, len(frame))
            else:
                publish(frame, len(frame))

    async def _send_loop(self) -> None:
        inbox = self.inbox
        wire = self.wire
        while True:
            try:
                frames = await inbox.receive_batch()
            except trio.EndOfChannel:
                return
            try:
                if not await wire.write_frames(frames):
                    return
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            inbox.batch_done()

    async def _keepalive(self, scope: trio.CancelScope) -> None:
        interval = self.settings.ping_interval
        assert interval
        with scope:
            while True:
                await trio.sleep(interval)
                with trio.move_on_after(self.settings.ping_timeout) as waiting:
                    try:
                        await self.ws.ping()
                    except ConnectionClosed:
                        return
                if waiting.cancelled_caught:
                    logger.debug(
                        "%s did not answer a ping within %g s",
                        self.peer,
                        self.settings.ping_timeout,
                    )
                    self._finish(EndReason.PING_TIMEOUT)
                    return

    def _log_closed(self) -> None:
        closed = self.ws.closed
        code = self.wire.close_code_sent or (closed.code if closed else None)
        reason = closed.reason if closed and closed.reason else None
        if self.end in (EndReason.SLOW, EndReason.PING_TIMEOUT):
            reason = self.end.value
        duration = trio.current_time() - self._started
        slow = self.end is EndReason.SLOW
        logger.info(
            "%s disconnected (path %s, code %s%s, %.1f s, %d messages in, %d out%s%s)",
            self.peer,
            self.path,
            code if code is not None else "none",
            f" {reason!r}" if reason else "",
            duration,
            self.messages_in,
            self.inbox.delivered,
            f", {self.inbox.dropped} dropped" if self.inbox.dropped else "",
            ", slow consumer" if slow else "",
            extra={
                "event": "closed",
                "peer": self.peer,
                "path": self.path,
                "code": code,
                "reason": reason,
                "duration_s": round(duration, 3),
                "messages_in": self.messages_in,
                "messages_out": self.inbox.delivered,
                "dropped": self.inbox.dropped,
                "slow": slow,
            },
        )
