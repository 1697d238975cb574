"""The broadcast server: WebSocket glue around :class:`~trio_ws_demo.hub.Hub`.

Who owns what::

    serve() ── listener nursery ── one task per connection (its own nursery)
                                     ├─ trio-websocket's reader (frames -> messages)
                                     ├─ receive loop: message -> encode once -> hub.publish()
                                     └─ send loop:    inbox batch -> one write to the socket

A message travels: client socket -> trio-websocket reader -> our receive loop
-> :func:`~trio_ws_demo.frames.encode_frame` (once) -> every subscriber's
bounded inbox -> each client's send loop -> :class:`~trio_ws_demo.wire.FrameWire`.
Publishing never waits for a client; a client over its inbox budget is handled
by the slow-client policy (close with 1008, or drop).
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_server_stream

from .frames import encode_frame
from .hub import Hub, HubStatistics, InboxBudget, SlowClientPolicy, Subscription
from .wire import FrameWire

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "BroadcastServer",
    "ServerOptions",
    "ServerStartupError",
    "serve",
]

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080

CLOSE_SLOW_CONSUMER = 1008


class ServerStartupError(Exception):
    """The server could not start listening; the message says what to do."""


@dataclass(frozen=True)
class ServerOptions:
    """Everything that shapes the server's behaviour; every field has a default."""

    echo: bool = False
    """Send each message back to its sender only, instead of to everyone."""
    budget: InboxBudget = field(default_factory=InboxBudget)
    """How much may queue for one client before it is a slow consumer."""
    slow_client: SlowClientPolicy = SlowClientPolicy.CLOSE
    max_message_size: int = 1024 * 1024
    """Largest message accepted from a client, in bytes; larger ones close with 1009."""
    handshake_timeout: float = 10.0
    """Seconds a new connection has to complete its opening handshake."""
    close_timeout: float = 5.0
    """Seconds to flush queued frames and finish a close handshake."""

    def __post_init__(self) -> None:
        if self.max_message_size < 1:
            raise ValueError("max_message_size must be at least 1 byte")
        if self.handshake_timeout <= 0 or self.close_timeout <= 0:
            raise ValueError("timeouts must be positive")


@dataclass
class _ConnectionRecord:
    """What one connection did, for its closing log line."""

    peer: str
    messages_in: int = 0


class BroadcastServer:
    """A broadcast (or echo) WebSocket server.

    Use :func:`serve` for the common case. Create this class yourself to look
    at :meth:`statistics` while it runs::

        server = BroadcastServer(ServerOptions())
        port = await nursery.start(server.run, "127.0.0.1", 0)
    """

    def __init__(self, options: ServerOptions | None = None) -> None:
        self.options = options or ServerOptions()
        self.hub: Hub[bytes] = Hub(budget=self.options.budget, policy=self.options.slow_client)
        self.port: int | None = None

    def statistics(self) -> HubStatistics:
        return self.hub.statistics()

    async def run(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on *host*:*port* and serve until cancelled.

        Reports the bound port through ``task_status`` once listening, so
        ``await nursery.start(server.run, host, 0)`` returns a usable port.
        """
        listeners = await _open_listeners(host, port)
        self.port = listeners[0].socket.getsockname()[1]
        logger.info(
            "listening on ws://%s:%d (%s)",
            _format_host(host),
            self.port,
            "echo" if self.options.echo else "broadcast",
        )
        try:
            await trio.serve_listeners(
                self._serve_connection,
                list(listeners),
                task_status=_PortStatus(task_status, self.port),
            )
        finally:
            logger.info("server stopped")

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        record = _ConnectionRecord(peer=_format_peer(stream))
        wire = FrameWire(stream)
        try:
            async with trio.open_nursery() as nursery:
                try:
                    ws = await self._handshake(nursery, wire)
                    if ws is not None:
                        await self._run_session(ws, wire, record)
                finally:
                    await wire.finish(self.options.close_timeout)
                    nursery.cancel_scope.cancel()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            logger.debug("%s: connection lost: %s", record.peer, exc)

    async def _handshake(
        self, nursery: trio.Nursery, wire: FrameWire
    ) -> WebSocketConnection | None:
        with trio.move_on_after(self.options.handshake_timeout):
            request = await wrap_server_stream(
                nursery, wire, message_queue_size=1, max_message_size=self.options.max_message_size
            )
            return await request.accept()
        logger.debug("handshake timed out")
        return None

    async def _run_session(
        self, ws: WebSocketConnection, wire: FrameWire, record: _ConnectionRecord
    ) -> None:
        close_timeout = self.options.close_timeout
        receiving = trio.CancelScope()
        tasks_scope: trio.CancelScope | None = None

        def on_slow() -> None:
            # Called from inside hub.publish(): no waiting here. Stop reading
            # from this client, free its backlog, and give the write already
            # under way close_timeout to finish so that a 1008 close can follow.
            receiving.cancel()
            inbox.discard_queued()
            if tasks_scope is not None:
                tasks_scope.deadline = trio.current_time() + close_timeout

        inbox = self.hub.subscribe(on_slow=on_slow)
        logger.info("%s connected (path %s, %d clients)", record.peer, ws.path, len(self.hub))
        try:
            async with trio.open_nursery() as tasks:
                tasks_scope = tasks.cancel_scope
                tasks.start_soon(self._send_loop, wire, inbox)
                with receiving:
                    await self._receive_loop(ws, inbox, record)
                # The peer closed (or was too slow). Stop taking broadcasts and
                # let the send loop flush what is queued, within close_timeout,
                # before the close frame goes out.
                inbox.close()
                if not inbox.closed_as_slow:
                    tasks.cancel_scope.deadline = trio.current_time() + close_timeout
            if inbox.closed_as_slow:
                logger.warning("%s is a slow consumer: closing with 1008", record.peer)
                wire.begin_local_close()
                with trio.move_on_after(close_timeout):
                    await ws.aclose(CLOSE_SLOW_CONSUMER, "slow consumer")
        finally:
            inbox.discard_queued()
            reason = ws.closed
            logger.info(
                "%s disconnected (code %s%s, %d messages in, %d out%s%s)",
                record.peer,
                reason.code if reason else "none",
                f" {reason.reason!r}" if reason and reason.reason else "",
                record.messages_in,
                inbox.delivered,
                f", {inbox.dropped} dropped" if inbox.dropped else "",
                ", slow consumer" if inbox.closed_as_slow else "",
            )

    async def _receive_loop(
        self, ws: WebSocketConnection, inbox: Subscription[bytes], record: _ConnectionRecord
    ) -> None:
        echo = self.options.echo
        publish = self.hub.publish
        while True:
            try:
                message = await ws.get_message()
            except ConnectionClosed:
                return
            record.messages_in += 1
            frame = encode_frame(message)
            if echo:
                inbox.offer(frame, len(frame))
            else:
                publish(frame, len(frame))

    @staticmethod
    async def _send_loop(wire: FrameWire, inbox: Subscription[bytes]) -> None:
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


async def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    options: ServerOptions | None = None,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a broadcast server until cancelled.

    ``port = await nursery.start(serve, "127.0.0.1", 0)`` returns once the
    server is listening, with the port it bound.
    """
    await BroadcastServer(options).run(host, port, task_status=task_status)


class _PortStatus:
    """Forwards ``started()`` from serve_listeners as the bound port number."""

    def __init__(self, outer: trio.TaskStatus[int], port: int) -> None:
        self._outer = outer
        self._port = port

    def started(self, value: object = None) -> None:
        self._outer.started(self._port)


async def _open_listeners(host: str, port: int) -> Sequence[trio.SocketListener]:
    try:
        return await trio.open_tcp_listeners(port, host=host)
    except socket.gaierror as exc:
        raise ServerStartupError(
            f"cannot listen on {host}:{port}: the host name does not resolve ({exc.strerror}); "
            "use an IP address such as 127.0.0.1 or 0.0.0.0"
        ) from None
    except OSError as exc:
        where = f"{_format_host(host)}:{port}"
        if exc.errno == errno.EADDRINUSE:
            hint = "the port is in use; stop the other server or choose another --port"
        elif exc.errno in (errno.EACCES, errno.EPERM):
            hint = "permission denied; use a port above 1023 or run with the needed privileges"
        elif exc.errno == errno.EADDRNOTAVAIL:
            hint = "the address is not on this machine; use 127.0.0.1 or 0.0.0.0"
        else:
            hint = exc.strerror or str(exc)
        raise ServerStartupError(f"cannot listen on {where}: {hint}") from None


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _format_peer(stream: trio.SocketStream) -> str:
    try:
        address = stream.socket.getpeername()
    except OSError:
        return "unknown peer"
    return f"{_format_host(str(address[0]))}:{address[1]}"
