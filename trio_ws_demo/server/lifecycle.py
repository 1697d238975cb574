"""The broadcast server's lifecycle: listen, serve connections, shut down.

Who owns what::

    BroadcastServer.run()
    ├─ accept loops (listen.py)
    ├─ keepalive: one task for every connection (keepalive.py)
    └─ the connection pool: one shielded nursery, one task per connection
         front door (frontdoor.py): TLS, request head, routing, refusals
         ├─ plain HTTP: answered by web.py (chat page, /healthz, /metrics)
         └─ a WebSocket: Connection (connection.py) in its own nursery
              ├─ reader: bytes -> protocol.py (wsproto) -> message -> the broker
              │    -> its room -> encode once -> hub.publish()
              └─ the outbox's writer, only while a backlog is written (outbox.py)

A message travels: client socket -> the connection's reader -> its sans-I/O
protocol (:mod:`trio_ws_demo.protocol`) -> the broker (:mod:`trio_ws_demo.broker`:
:class:`~trio_ws_demo.broker.LocalBroker`, or the Redis backplane and back from
its reader) -> its room (:meth:`~trio_ws_demo.rooms.Room.deliver`)
-> :func:`~trio_ws_demo.frames.encode_frame` (once per room and form) -> :meth:`Hub.publish` ->
every client's :class:`~trio_ws_demo.server.outbox.Outbox`: straight to an idle
client's socket, else into its bounded queue for its writer.

Shutdown: cancelling :meth:`BroadcastServer.run` stops accepting at once and
cancels handshakes in progress; every client then gets close 1001 ``server
shutting down`` after its queue is flushed. The pool is shielded from the
cancellation so that clients can be told, but never for longer than
``shutdown_timeout``. With ``--redis``, the backplane runs outside the pool's
services and stops last: what waits for Redis is written and read back into
the rooms before the clients are told to close (within the link's timeout;
else delivered here), and the backplane is cancelled once the pool is empty.

A drain (:meth:`BroadcastServer.drain`, what SIGTERM does on the command line)
comes before that shutdown: ``/readyz`` says 503 ``draining`` at once, new
WebSocket upgrades get 503 with ``Retry-After`` (the listeners stay open, so
probes and ``POST`` are still answered), and the clients are closed with 1001
one by one over ``drain_window`` (:mod:`.drain`). Then the shutdown above runs
for whoever is left, within ``shutdown_timeout``: a drain takes at most
``drain_window + shutdown_timeout``. :meth:`BroadcastServer.abort` (a second
signal) ends either at once.
"""

from __future__ import annotations

import logging
import math
import os
import socket

import trio

from ..backplane import RedisBackplane
from ..broker import Broker, LocalBroker
from ..budget import MemoryBudget, QueuedFrames
from ..envelopes import SUBPROTOCOL
from ..errors import BackplaneUnavailable, ServerStartupError
from ..handshake import accept_response, agreed_extension
from ..histogram import LATENCY_BUCKETS, Histogram
from ..http import format_host
from ..protocol import End
from ..rooms import Rooms
from ..stats import ServerStatistics, Traffic
from .access_log import AccessLog
from .connection import Connection, ConnectionSettings
from .drain import close_spread
from .frontdoor import FrontDoor, PublishRequest
from .keepalive import Keepalive
from .listen import accept_loop, open_listeners
from .notify import Notifier
from .options import ServerOptions
from .peer import Peer
from .presence import PresenceSender
from .publish import PublishApi, PublishSettings
from .tls import TlsChannel, refuse_renegotiation
from .transport import Transport
from .web import WebRoutes

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "BroadcastServer",
    "serve",
]

logger = logging.getLogger("trio_ws_demo.server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


class BroadcastServer:
    """A broadcast (or echo) WebSocket server.

    Use :func:`serve` for the common case. Create this class yourself to look
    at :meth:`statistics` while it runs::

        server = BroadcastServer(ServerOptions())
        port = await nursery.start(server.run, "127.0.0.1", 0)
    """

    def __init__(self, options: ServerOptions | None = None) -> None:
        self.options = options = options or ServerOptions()
        if options.ssl_context is not None:
            refuse_renegotiation(options.ssl_context)
        self.presence = PresenceSender()
        self.rooms = Rooms(
            budget=options.budget,
            policy=options.slow_client,
            max_rooms=options.max_rooms,
            history=options.history,
            history_bytes=options.history_bytes,
            room_ttl=options.room_ttl,
            clock=trio.current_time,
            on_freed=lambda room: self.broker.forget(room),  # the broker stops following it
            on_presence=self.presence.changed,  # its presence frame is sent within 1 s
            # Without Redis a room's offsets are this process's own: a room freed
            # and made again goes on counting in its epoch (issue 28 item 6).
            remember_freed=not options.redis,
            compression=options.compression,
        )
        self.port: int | None = None
        self.addresses: list[str] = []
        """The IP addresses it listens on, once listening (e.g. ``["0.0.0.0"]``)."""
        self.instance = options.instance or ""
        """This process's name (``--instance``, else HOST:PORT once listening)."""
        self.traffic = Traffic()
        self.memory = MemoryBudget(options.max_memory)
        """Every byte peers make this process hold, against --max-memory."""
        self.queued_frames = QueuedFrames(self.memory)
        self.connections_total = 0
        """WebSocket connections admitted so far."""
        self.connection_errors = 0
        self.handshakes = Histogram(LATENCY_BUCKETS)
        """Seconds from accept to the 101 written, per WebSocket opened."""
        self.keepalive = (
            Keepalive(options.ping_interval, options.ping_timeout)
            if options.ping_interval
            else None
        )
        self.backplane = (
            RedisBackplane(
                options.redis,
                self.rooms,
                optional=options.redis_optional,
                history=options.history,
                history_bytes=options.history_bytes,
                stream_bytes=options.stream_bytes,
                stream_ttl=options.stream_ttl,
                redis_wait=options.redis_wait,
                idempotency_window=options.idempotency_window,
                outbound_limit=options.redis_queue,
                memory=self.memory,
                # A SIGKILLed process's members leave within 2 x --ping-interval.
                presence_ttl=2 * (options.ping_interval or 20.0) - 1.0,
            )
            if options.redis
            else None
        )
        self.web = WebRoutes(
            self.statistics,
            self.rooms,
            options,
            lambda: self.instance,
            self.backplane.presence.elsewhere if self.backplane is not None else None,
            readiness=self._readiness,
        )
        access_log = AccessLog(options.access_log)
        self.front_door = FrontDoor(
            options, self.web, lambda: self.clients, self.rooms, self.memory, access_log
        )
        self.broker: Broker = (
            self.backplane
            if self.backplane is not None
            else LocalBroker(
                self.rooms, history=options.history, idempotency_window=options.idempotency_window
            )
        )
        """Where every message goes first: Redis with --redis, else this process only
        (the one place that chooses; nothing after it asks which)."""
        self.publisher = PublishApi(
            PublishSettings(
                access=options.access,
                max_message_size=options.max_message_size,
                max_batch=options.max_batch,
                max_room_name=options.max_room_name,
                timeout=options.handshake_timeout,
                max_request_head=options.max_request_head,
                max_connections=options.max_clients,
                write_timeout=options.close_timeout,
                max_message_rate=options.max_message_rate,
                message_burst=options.message_burst or 1,
                memory=self.memory,
                trusted_proxies=options.trusted_proxies,
                access_log=access_log,
            ),
            self.broker,
        )
        """``POST /<room>``: the HTTP publish API."""
        self._connections: set[Connection] = set()
        self._pending_heads = trio.Semaphore(options.max_pending)
        """One slot per accepted connection until its request head is read."""
        self._pool_scope: trio.CancelScope | None = None
        self._stopping = trio.Event()
        self._deadline = math.inf
        """When shutdown drops whoever is still connected."""
        self._backplane_scope: trio.CancelScope | None = None
        self._serving = False
        self._run_scope = trio.CancelScope()
        """Around :meth:`run`'s serving: :meth:`drain` and :meth:`abort` end it here."""
        self._services: trio.Nursery | None = None
        self._draining = False
        self.notifier = Notifier()
        """systemd's $NOTIFY_SOCKET: READY=1, STOPPING=1, WATCHDOG=1 (a no-op without it)."""
        self._settings = ConnectionSettings(
            echo=options.echo,
            budget=options.budget,
            max_message_size=options.max_message_size,
            close_timeout=options.close_timeout,
            max_message_rate=options.max_message_rate,
            message_burst=options.message_burst or 1,
            close_over_rate=options.rate_limit_action == "close",
            memory=self.memory,
            queued=self.queued_frames,
            handshakes=self.handshakes,
            access_log=access_log,
        )

    def broadcast(self, message: str | bytes, room: str = "") -> int:
        """Send *message* to every client in *room* from the application side; never waits.

        Encoded once, delivered like a client's message (same budget,
        slow-client policy and history). Returns how many clients took it: with
        a Redis backplane that is 0, since it reaches every process's clients
        (this one's too) once it comes back from Redis, in the room's order.
        """
        return self.broker.send_to(room, message)

    @property
    def clients(self) -> int:
        """WebSocket clients connected now (and handshakes already admitted)."""
        return len(self._connections)

    def statistics(self) -> ServerStatistics:
        hub = self.rooms.hub_statistics()
        rooms = self.rooms.statistics()
        return ServerStatistics(
            clients=self.clients,
            subscribers=hub.subscribers,
            connections_total=self.connections_total,
            messages_in=self.traffic.messages_in,
            bytes_in=self.traffic.bytes_in,
            published=hub.published,
            delivered=self.traffic.delivered,
            delivered_bytes=self.traffic.delivered_bytes,
            dropped=hub.dropped,
            slow_closed=hub.slow_closed,
            queued_messages=hub.queued_messages,
            queued_bytes=hub.queued_bytes,
            max_inbox=hub.max_inbox,
            rooms=rooms.rooms,
            history_messages=rooms.history_messages,
            history_bytes=rooms.history_bytes,
            rejections={str(reason): n for reason, n in self.front_door.rejections.items()},
            connection_errors=self.connection_errors,
            memory_used=self.memory.used,
            memory_limit=self.memory.limit,
            memory_refused=self.memory.refused,
            http_published=self.publisher.published,
            http_publishes=dict(self.publisher.answers),
            delivery_lag=self.rooms.timings.lag.snapshot(),
            broadcast_duration=self.rooms.timings.broadcast.snapshot(),
            handshake_duration=self.handshakes.snapshot(),
            backplane=self.broker.statistics(),
            writes=self.traffic.writes,
        )

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
        listeners = await open_listeners(host, port, reuse_port=self.options.reuse_port)
        self.port = listeners[0].getsockname()[1]
        self.addresses = [listener.getsockname()[0] for listener in listeners]
        if not self.instance:
            self.instance = f"{format_host(host or '0.0.0.0')}:{self.port}"
            if self.options.reuse_port:  # several processes on one port: each its own name
                self.instance += f"/{os.getpid()}"
        url = f"{self.options.scheme}://{format_host(host or '0.0.0.0')}:{self.port}"
        logger.debug(  # the command line prints it; a library user has the port
            "listening on %s (%s)",
            url,
            "echo" if self.options.echo else "broadcast",
            extra={"event": "listening", "url": url},
        )
        try:
            with self._run_scope:
                await self._serve(listeners, task_status)
        except* ServerStartupError as group:  # raised inside the nurseries: unwrap
            error: BaseException = group
            while isinstance(error, BaseExceptionGroup):
                error = error.exceptions[0]
            raise error from None
        finally:
            for listener in listeners:
                listener.close()
            self.notifier.close()
            logger.debug("server stopped")

    async def _serve(
        self, listeners: list[socket.socket], task_status: trio.TaskStatus[int]
    ) -> None:
        """Run the backplane (it must be up before the first client, unless
        optional), the connection pool, the keepalive and the accept loops.

        The backplane is not a service: it outlives the clients (see
        :meth:`_connection_pool`), so that what they sent just before the
        shutdown still reaches this process's listeners through Redis."""
        async with trio.open_nursery() as nursery:
            pool: trio.Nursery = await nursery.start(self._connection_pool)
            try:
                async with trio.open_nursery() as services:
                    self._services = services
                    # Accepting from the start, so that probes are answered while
                    # Redis is reached (/readyz: 503 "starting"); upgrades are
                    # refused with 503 until then.
                    self.front_door.hold("starting")
                    for listener in listeners:
                        services.start_soon(
                            accept_loop,
                            listener,
                            pool,
                            self.handle_stream,
                            self._pending_heads,
                            self.front_door.drop_oldest,
                        )
                    if self.backplane is not None:
                        try:
                            await nursery.start(self._run_backplane, self.backplane)
                        except BackplaneUnavailable as exc:
                            raise ServerStartupError(str(exc)) from None
                        assert self._backplane_scope is not None
                        self._backplane_scope.shield = True  # up: it stops after the pool
                    self.front_door.hold(None)
                    services.start_soon(self.presence.run)
                    if self.keepalive is not None:
                        services.start_soon(self.keepalive.run)
                    if self.options.room_ttl is not None:
                        services.start_soon(self._expire_rooms, self.options.room_ttl)
                    services.start_soon(self.notifier.watchdog)
                    self._serving = True
                    task_status.started(listeners[0].getsockname()[1])
                    self.notifier.send("READY=1")
            finally:
                self._begin_shutdown()

    async def _run_backplane(
        self, backplane: RedisBackplane, *, task_status: trio.TaskStatus[None]
    ) -> None:
        """The backplane, shielded once it is up: the pool cancels it when the
        last client is gone (or at once, with :meth:`abort`)."""
        scope = self._backplane_scope = trio.CancelScope()
        with scope:
            await backplane.run(task_status=task_status)

    async def _expire_rooms(self, ttl: float) -> None:
        """Free rooms idle for *ttl*, checking a few times per *ttl* (at most once a minute)."""
        while True:
            await trio.sleep(min(ttl / 4, 60.0))
            expired = self.rooms.expire()
            if expired:
                logger.debug("%d idle rooms expired", expired)

    async def _connection_pool(self, *, task_status: trio.TaskStatus[trio.Nursery]) -> None:
        # One shield for every connection: cancelling run() must not drop a
        # client before it has been told; _begin_shutdown() bounds the wait.
        with trio.CancelScope(shield=True) as self._pool_scope:
            try:
                async with trio.open_nursery() as pool:
                    task_status.started(pool)
                    await self._stopping.wait()
                    if self.backplane is not None and self._serving:
                        # What waits for Redis reaches this process's clients
                        # before they leave their rooms (finding R13).
                        await self.backplane.flush()
                    self._close_connections()
            finally:
                if self._backplane_scope is not None:
                    self._backplane_scope.cancel()

    def drain(self, window: float | None = None) -> None:
        """Stop gracefully; :meth:`run` returns once done. Never waits.

        ``/readyz`` answers 503 ``draining`` from now on, and new WebSocket
        upgrades 503 with ``Retry-After`` (the listeners stay open, so that
        probes are answered). The clients are closed with 1001 one by one,
        evenly over *window* seconds (default ``drain_window``) in random order,
        so that they reconnect to the other processes gradually, not all in one
        second. Then whoever is left gets the ordinary shutdown, within
        ``shutdown_timeout``. A *window* of 0 stops as cancelling :meth:`run`
        does; a second call does nothing, and :meth:`abort` ends a drain at once.
        Only once :meth:`run` has reported that it listens: before that, there
        is nobody to drain, and cancelling :meth:`run` is the way to stop it.
        """
        window = self.options.drain_window if window is None else window
        if window < 0:
            raise ValueError("the drain window must not be negative")
        if self._draining or self._stopping.is_set():
            return
        if not self._serving or self._services is None:
            raise RuntimeError("drain() before run() is serving: cancel run() instead")
        if not window:
            self._run_scope.cancel()  # nothing to spread: the ordinary shutdown
            return
        self._draining = True
        self._deadline = trio.current_time() + window + self.options.shutdown_timeout
        self.front_door.drain()
        self.notifier.send("STOPPING=1")
        logger.info(
            "draining: closing %d connections over %g s",
            self.clients,
            window,
            extra={"event": "drain", "clients": self.clients, "window": window},
        )
        self._services.start_soon(self._drain, window)

    async def _drain(self, window: float) -> None:
        await close_spread(list(self._connections), window, self._deadline)
        # Whoever joined meanwhile and the backplane (last) go as at any shutdown.
        self._run_scope.cancel()

    def _readiness(self) -> str:
        """What ``/readyz`` says (see :mod:`.web`)."""
        if self._draining:
            return "draining"
        if self._stopping.is_set():
            return "not ready"
        return "ready" if self._serving else "starting"

    def abort(self) -> None:
        """Drop every connection now, without closing handshakes (a second Ctrl-C);
        :meth:`run` returns."""
        self._run_scope.cancel()
        self._begin_shutdown()
        if self._pool_scope is not None:
            self._pool_scope.cancel()
        for connection in list(self._connections):
            connection.abort(End.SHUTDOWN)

    def _begin_shutdown(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self.port is None or not self._serving:
            return  # never served (a start-up error): nobody to close
        if not self._draining:  # (a drain said so when it began)
            self.notifier.send("STOPPING=1")
        logger.info(
            "shutting down: closing %d connections",
            self.clients,
            extra={"event": "shutdown", "clients": self.clients},
        )
        self.front_door.close()
        self.publisher.close()
        self._deadline = deadline = trio.current_time() + self.options.shutdown_timeout
        if self._pool_scope is not None:
            self._pool_scope.deadline = deadline
        if self.backplane is None or self._pool_scope is None:
            self._close_connections()  # else the pool does, once the backplane is flushed

    def _close_connections(self) -> None:
        for connection in list(self._connections):
            # Also for connections handed to handle_stream() outside the pool.
            connection.request_shutdown(self._deadline)

    async def handle_stream(
        self,
        stream: trio.abc.Stream,
        raw_socket: socket.socket | None = None,
        pending: trio.Semaphore | None = None,
    ) -> None:
        """Serve one connection on any byte stream (tests use memory streams).

        *raw_socket*, the stdlib socket under a plain TCP *stream*, enables
        the synchronous write fast path. Keepalive runs only under :meth:`run`.
        Raises nothing but ``Cancelled``: whatever one peer sends or does ends
        at most its own connection. *pending* is the slot this connection
        holds until its head is read (see :func:`~trio_ws_demo.server.listen.accept_loop`).
        """
        # The handshake is its own coroutine: its many locals go once the
        # WebSocket is open, and this frame, which stays for the connection's
        # life, keeps only a few (a coroutine's size grows with its locals).
        connection = await self._handshake(stream, raw_socket, pending)
        if connection is None:
            return
        self._connections.add(connection)  # before any checkpoint: max_clients holds
        self.connections_total += 1
        watch = None
        if self._stopping.is_set():
            connection.request_shutdown()
        elif self._draining:  # (admitted as the drain began: it would be refused now)
            connection.request_shutdown(self._deadline)
        elif self.keepalive is not None:
            watch = self.keepalive.watch(connection)
        try:
            await connection.run()
        finally:
            self._connections.discard(connection)
            self.rooms.prune(connection.room)  # made ready by follow(), never joined
            if watch is not None:
                assert self.keepalive is not None
                self.keepalive.unwatch(watch)
            if connection.failed:
                self.connection_errors += 1

    async def _handshake(
        self,
        stream: trio.abc.Stream,
        raw_socket: socket.socket | None,
        pending: trio.Semaphore | None,
    ) -> Connection | None:
        """The front door, then the WebSocket's connection object (not yet run);
        None if the request ended here (refused, answered, or not an upgrade)."""
        accepted = trio.current_time()  # the handshake's clock starts (TLS included)
        peer = Peer(stream)
        try:
            try:
                admitted = await self.front_door.admit(stream, peer)
            finally:
                if pending is not None:
                    pending.release()
            if admitted is None:
                return None
            peer = admitted.peer  # behind a trusted proxy, the client it names
            if isinstance(admitted, PublishRequest):
                async with admitted.stream:
                    await self.publisher.serve(admitted.stream, admitted.head, peer)
                return None
            stream, head = admitted.stream, admitted.head
            backfill = None
            try:
                await self.broker.follow(admitted.room)  # shared history before joining
                if admitted.since is not None:
                    backfill = await self.broker.backfill(admitted.room, admitted.since)
                # Others may have taken the last places while this awaited.
                needed = sum(len(kept.message) for kept in backfill or ())
                if await self.front_door.refuse_if_full(stream, peer, head, admitted.room, needed):
                    self.rooms.prune(admitted.room)
                    return None
            except BaseException:
                self.rooms.prune(admitted.room)
                raise
            tls = stream if isinstance(stream, TlsChannel) else None
            transport = Transport(
                stream,
                raw_socket if tls or self.options.ssl_context is None else None,
                tls,
            )
            deflate = agreed_extension(head, self.options.compression)
            connection = Connection(
                transport,
                accept_response(head, SUBPROTOCOL if admitted.v1 else None, deflate),
                rooms=self.rooms,
                broker=self.broker,
                room=admitted.room,
                v1=admitted.v1,
                since=admitted.since,
                own=admitted.own,
                backfill=backfill,
                grant=admitted.grant,
                settings=self._settings,
                traffic=self.traffic,
                peer=peer,
                target=head.target,
                early=head.extra,
                accepted=accepted,
                deflate=deflate,
            )
        except BaseException as exc:
            if isinstance(exc, Exception):
                self.connection_errors += 1
                logger.exception("%s: connection handler failed before the WebSocket opened", peer)
            await trio.aclose_forcefully(stream)
            if isinstance(exc, Exception):
                return None
            raise
        return connection


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
