"""The broadcast server: listeners, the front door, sessions and shutdown.

Who owns what::

    BroadcastServer.run() ── accept loops (listen.py) ── one task per connection
        front door (TLS, request head, checks; see handshake.py)
        ├─ not an upgrade: answered by web.py (chat page, /healthz, /metrics)
        └─ its own nursery: trio-websocket's reader + a Session (session.py)
                            ├─ receive loop: message -> encode once -> hub.publish()
                            ├─ send loop:    inbox -> every queued frame in one write
                            └─ keepalive:    ping; a silent peer is let go

A message travels: client socket -> trio-websocket reader -> receive loop ->
:func:`~trio_ws_demo.frames.encode_frame` (once) -> every subscriber: straight
to an idle client's socket, else into its bounded inbox
(:class:`~trio_ws_demo.hub.Hub`) for its send loop (see wire.py).

Shutdown: cancelling :meth:`BroadcastServer.run` stops accepting at once, then
every client gets close 1001 ``server shutting down`` after its queue is
flushed; connection tasks are shielded from the cancellation so that they can
do this, but never for longer than ``shutdown_timeout``.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import socket
import ssl
from dataclasses import dataclass, field

import trio
from trio_websocket import WebSocketConnection, wrap_server_stream

from .handshake import (
    DEFAULT_MAX_REQUEST_HEAD,
    AccessPolicy,
    HttpRefusal,
    RequestHead,
    check_upgrade,
    read_request_head,
    redact,
    send_response,
)
from .hub import Hub, HubStatistics, InboxBudget, SlowClientPolicy
from .listen import accept_loop, open_listening_sockets
from .session import Session, SessionSettings, Traffic
from .web import WebRoutes
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
    max_clients: int = 10_000
    """WebSocket clients at once; one more is refused with HTTP 503."""
    max_request_head: int = DEFAULT_MAX_REQUEST_HEAD
    """Largest HTTP request head, in bytes; a larger one gets 431."""
    handshake_timeout: float = 10.0
    """Seconds a new connection has to complete TLS and its opening handshake."""
    close_timeout: float = 5.0
    """Seconds to flush queued frames and finish a close handshake."""
    ping_interval: float | None = 20.0
    """Seconds between keepalive pings; None disables keepalive."""
    ping_timeout: float = 20.0
    """Seconds to wait for a pong before the peer counts as gone."""
    shutdown_timeout: float = 5.0
    """Seconds that closing every client may take when the server stops."""
    access: AccessPolicy = field(default_factory=AccessPolicy)
    """Allowed origins and the shared token, if any."""
    ssl_context: ssl.SSLContext | None = None
    """Serve ``wss://`` with this context."""

    def __post_init__(self) -> None:
        if self.max_message_size < 1 or self.max_clients < 1 or self.max_request_head < 256:
            raise ValueError("size limits must be positive (request head: at least 256 bytes)")
        timeouts = [self.handshake_timeout, self.close_timeout, self.ping_timeout]
        if min(timeouts) <= 0 or self.shutdown_timeout < 0:
            raise ValueError("timeouts must be positive")
        if self.ping_interval is not None and self.ping_interval <= 0:
            raise ValueError("ping_interval must be positive (or None to disable)")

    @property
    def scheme(self) -> str:
        return "wss" if self.ssl_context else "ws"


@dataclass(eq=False)
class _Connection:
    """A live connection, as the server sees it during shutdown."""

    scope: trio.CancelScope
    session: Session | None = None


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
        self.rejections: collections.Counter[str] = collections.Counter()
        """Refused handshakes, by reason."""
        self.connections_total = 0
        """WebSocket connections accepted so far."""
        self.traffic = Traffic()
        self.web = WebRoutes(self._metrics_snapshot, lambda: self.clients)
        self._connections: set[_Connection] = set()
        self._sessions = 0
        self._shutting_down = False
        self._session_settings = SessionSettings(
            echo=self.options.echo,
            close_timeout=self.options.close_timeout,
            ping_interval=self.options.ping_interval,
            ping_timeout=self.options.ping_timeout,
        )

    def statistics(self) -> HubStatistics:
        return self.hub.statistics()

    def _metrics_snapshot(self) -> dict[str, object]:
        stats = self.hub.statistics()
        return {
            "clients": self.clients,
            "connections_total": self.connections_total,
            "messages_in": self.traffic.messages_in,
            "bytes_in": self.traffic.bytes_in,
            "delivered": stats.delivered,
            "delivered_bytes": stats.delivered_bytes,
            "slow_closed": stats.slow_closed,
            "dropped": stats.dropped,
            "rejections": dict(self.rejections),
            "queued_messages": stats.queued_messages,
            "queued_bytes": stats.queued_bytes,
            "max_inbox": stats.max_inbox,
        }

    @property
    def clients(self) -> int:
        """WebSocket clients connected now."""
        return self._sessions

    async def run(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on *host*:*port* and serve until cancelled, then close every client.

        Reports the bound port through ``task_status`` once listening, so
        ``await nursery.start(server.run, host, 0)`` returns a usable port.
        """
        listeners = _open_listeners(host, port)
        self.port = listeners[0].getsockname()[1]
        url = f"{self.options.scheme}://{_format_host(host)}:{self.port}"
        logger.info(
            "listening on %s (%s)",
            url,
            "echo" if self.options.echo else "broadcast",
            extra={"event": "listening", "url": url},
        )
        try:
            async with trio.open_nursery() as connections:
                try:
                    async with trio.open_nursery() as acceptors:
                        for listener in listeners:
                            acceptors.start_soon(
                                accept_loop, listener, connections, self._handle_accepted
                            )
                        task_status.started(self.port)
                finally:
                    self._begin_shutdown()
        finally:
            for listener in listeners:
                listener.close()
            logger.debug("server stopped")

    def abort(self) -> None:
        """Drop every connection now, without closing handshakes (a second Ctrl-C)."""
        self._shutting_down = True
        for connection in list(self._connections):
            connection.scope.cancel()

    def _begin_shutdown(self) -> None:
        if self._shutting_down:
            return
        self._shutting_down = True
        count = len(self._connections)
        logger.info(
            "shutting down: closing %d connections",
            count,
            extra={"event": "shutdown", "clients": self.clients},
        )
        deadline = trio.current_time() + self.options.shutdown_timeout
        for connection in list(self._connections):
            connection.scope.deadline = min(connection.scope.deadline, deadline)
            if connection.session is not None:
                connection.session.request_shutdown()
            else:
                connection.scope.cancel()

    async def _handle_accepted(self, sock: socket.socket) -> None:
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        # Shielded: cancelling run() must not kill a connection before it has
        # said goodbye; _begin_shutdown() bounds how long that may take.
        with trio.CancelScope(shield=True) as scope:
            if self._shutting_down:
                await trio.aclose_forcefully(stream)
                return
            connection = _Connection(scope)
            self._connections.add(connection)
            try:
                await self.handle_stream(stream, connection, raw_socket=sock)
            finally:
                self._connections.discard(connection)

    async def handle_stream(
        self,
        stream: trio.abc.Stream,
        connection: _Connection | None = None,
        *,
        raw_socket: socket.socket | None = None,
    ) -> None:
        """Serve one connection on any byte stream (tests use memory streams).

        *raw_socket*, the stdlib socket under a plain TCP *stream*, enables
        the synchronous write fast path.
        """
        peer = _format_peer(stream)
        wire: FrameWire | None = None
        async with trio.open_nursery() as nursery:
            try:
                with trio.move_on_after(self.options.handshake_timeout) as handshake:
                    stream = await self._start_tls(stream)
                    accepted = await self._front_door(
                        nursery, stream, peer, None if self.options.ssl_context else raw_socket
                    )
                if handshake.cancelled_caught:
                    self._reject_count("handshake timeout")
                    logger.debug("%s: handshake timed out", peer)
                    return
                if accepted is None:
                    return
                ws, wire, head = accepted
                self.connections_total += 1
                session = Session(
                    ws,
                    wire,
                    self.hub,
                    self._session_settings,
                    peer,
                    redact(head.target),
                    self.traffic,
                )
                del accepted, head  # an idle connection should hold as little as possible
                if connection is not None:
                    connection.session = session
                try:
                    await session.run()
                finally:
                    self._sessions -= 1
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                # The peer went away (or failed TLS): nothing to answer.
                logger.debug("%s: connection lost: %s", peer, exc.__cause__ or exc)
            finally:
                if wire is not None:
                    await wire.finish(self.options.close_timeout)
                else:
                    await trio.aclose_forcefully(stream)
                nursery.cancel_scope.cancel()

    async def _start_tls(self, stream: trio.abc.Stream) -> trio.abc.Stream:
        if self.options.ssl_context is None:
            return stream
        tls = trio.SSLStream(stream, self.options.ssl_context, server_side=True)
        await tls.do_handshake()
        return tls

    async def _front_door(
        self,
        nursery: trio.Nursery,
        stream: trio.abc.Stream,
        peer: str,
        raw_socket: socket.socket | None,
    ) -> tuple[WebSocketConnection, FrameWire, RequestHead] | None:
        """Read the request head; refuse it, or hand it to trio-websocket and accept."""
        head = await read_request_head(stream, self.options.max_request_head)
        if head is None:
            return None
        if isinstance(head, HttpRefusal):
            await self._refuse(stream, head, peer, None)
            return None
        if not head.is_websocket_upgrade:
            status = await self.web.answer(stream, head)
            path = redact(head.target)
            logger.info(
                "%s %s %s: HTTP %d",
                peer,
                head.method,
                path,
                status,
                extra={"event": "http", "peer": peer, "path": path, "status": status},
            )
            await _linger(stream)
            return None
        refusal = check_upgrade(head) or self.options.access.check(head)
        if refusal is None and self._sessions >= self.options.max_clients:
            refusal = HttpRefusal(503, "too many clients", [("Retry-After", "5")])
        if refusal is not None:
            await self._refuse(stream, refusal, peer, head)
            return None
        self._sessions += 1  # reserved now, so concurrent handshakes respect max_clients
        try:
            wire = FrameWire(stream, raw_socket)
            wire.replay(head.raw)
            request = await wrap_server_stream(
                nursery,
                wire,
                message_queue_size=1,
                max_message_size=self.options.max_message_size,
            )
            ws = await request.accept()
        except BaseException:
            self._sessions -= 1
            raise
        return ws, wire, head

    async def _refuse(
        self, stream: trio.abc.Stream, refusal: HttpRefusal, peer: str, head: RequestHead | None
    ) -> None:
        self._reject_count(refusal.reason)
        path = redact(head.target) if head else None
        logger.info(
            "%s refused: HTTP %d %s%s",
            peer,
            refusal.status,
            refusal.reason,
            f" ({head.method} {path})" if head else "",
            extra={
                "event": "refused",
                "peer": peer,
                "path": path,
                "status": refusal.status,
                "reason": refusal.reason,
            },
        )
        body = f"{refusal.status} {refusal.reason}\n".encode()
        await send_response(stream, refusal.status, headers=refusal.headers, body=body)
        await _linger(stream)

    def _reject_count(self, reason: str) -> None:
        self.rejections[reason] += 1


async def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    options: ServerOptions | None = None,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a broadcast server until cancelled, then close every client with 1001.

    ``port = await nursery.start(serve, "127.0.0.1", 0)`` returns once the
    server is listening, with the port it bound.
    """
    await BroadcastServer(options).run(host, port, task_status=task_status)


def _open_listeners(host: str, port: int) -> list[socket.socket]:
    try:
        return open_listening_sockets(host, port, backlog=socket.SOMAXCONN)
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


async def _linger(stream: trio.abc.Stream) -> None:
    """Half-close and drain briefly, so that unread request bytes do not turn
    our close into a reset that destroys the response (RFC 9112 §9.6)."""
    if not isinstance(stream, trio.abc.HalfCloseableStream):
        return
    with (
        trio.move_on_after(1),
        contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
    ):
        await stream.send_eof()
        drained = 0
        while drained < 256 * 1024 and (chunk := await stream.receive_some(65536)):
            drained += len(chunk)


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _format_peer(stream: trio.abc.Stream) -> str:
    transport = stream
    while isinstance(transport, trio.SSLStream):
        transport = transport.transport_stream
    if not isinstance(transport, trio.SocketStream):
        return type(transport).__name__
    try:
        address = transport.socket.getpeername()
    except OSError:
        return "unknown peer"
    return f"{_format_host(str(address[0]))}:{address[1]}"
