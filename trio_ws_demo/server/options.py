"""Everything that shapes the server's behaviour, with a documented default each."""

from __future__ import annotations

import math
import ssl
from dataclasses import dataclass, field

from ..access import AccessPolicy
from ..broker import DEFAULT_STREAM_BYTES, DEFAULT_STREAM_TTL
from ..budget import DEFAULT_MAX_MEMORY
from ..extensions import Compression
from ..forwarded import TrustedProxies
from ..http import DEFAULT_MAX_REQUEST_HEAD
from ..hub import InboxBudget, SlowClientPolicy
from ..idempotency import DEFAULT_IDEMPOTENCY_WINDOW
from ..rooms import (
    DEFAULT_HISTORY_BYTES,
    DEFAULT_MAX_ROOM_NAME,
    DEFAULT_MAX_ROOMS,
    DEFAULT_ROOM_TTL,
)
from .drain import DEFAULT_DRAIN_WINDOW

__all__ = ["ServerOptions"]


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
    max_pending: int = 1024
    """Connections whose TLS handshake and request head are still arriving; past
    this, new connections wait in the kernel's listen backlog until one is done."""
    handshake_timeout: float = 10.0
    """Seconds a new connection has to complete TLS and its opening handshake."""
    close_timeout: float = 5.0
    """Seconds to flush queued frames before a close frame, and again for the
    peer's answer to it."""
    ping_interval: float | None = 20.0
    """Seconds of silence from a peer before it is pinged; None (or 0) disables keepalive."""
    ping_timeout: float = 20.0
    """Seconds a pinged peer may stay silent before it counts as gone."""
    shutdown_timeout: float = 5.0
    """Seconds that closing every client may take when the server stops (after a
    drain's window, the time its last closes may still take)."""
    drain_window: float = DEFAULT_DRAIN_WINDOW
    """Seconds :meth:`~trio_ws_demo.server.BroadcastServer.drain` spreads its 1001
    closes over, so that clients reconnect elsewhere gradually (0: all at once)."""
    max_rooms: int = DEFAULT_MAX_ROOMS
    """Rooms at once; a handshake that would open one more gets HTTP 503."""
    max_room_name: int = DEFAULT_MAX_ROOM_NAME
    """Longest room name (the URL path without its first /), in bytes."""
    history: int = 0
    """Messages each room keeps for clients that join later (0: none)."""
    history_bytes: int = DEFAULT_HISTORY_BYTES
    """Bytes each room's history may hold; the oldest messages go first."""
    room_ttl: float | None = DEFAULT_ROOM_TTL
    """Seconds a room without clients keeps its history before it is freed (None or
    0: for ever). At ``max_rooms`` the least recently used such room gives way first."""
    max_batch: int = 1000
    """Lines one ``application/x-ndjson`` publish request may carry (413 past it)."""
    max_message_rate: float = 1000.0
    """Frames per second one client may send on average (messages, fragments and
    pings alike); past it (and past ``message_burst`` at once) the server reads
    from it less, so TCP slows it and nothing is lost. 0: no limit."""
    message_burst: int | None = None
    """Frames one client may send at once; None: one second's worth of the rate."""
    rate_limit_action: str = "slow"
    """``"slow"``: over the rate, read less; ``"close"``: close with 1008 ``rate limit``."""
    max_memory: int = DEFAULT_MAX_MEMORY
    """Bytes every peer together may make the process hold (partial messages,
    queues, TLS records, backfill, publish bodies); past it, a message closes its
    sender with 1013 and a join or a POST gets 503."""
    access: AccessPolicy = field(default_factory=AccessPolicy)
    """Allowed origins and the shared token, if any."""
    ssl_context: ssl.SSLContext | None = None
    """Serve ``wss://`` with this context."""

    redis: str | None = None
    """``redis://[:password@]host:port/db``: share rooms, history and offsets with
    every server process pointed at the same Redis (see :mod:`trio_ws_demo.backplane`)."""
    redis_queue: int = 10_000
    """Messages that may wait to be written to Redis; more (Redis frozen) are dropped
    and counted."""
    redis_optional: bool = False
    """Start even if Redis is unreachable (local until it is back)."""
    stream_bytes: int = DEFAULT_STREAM_BYTES
    """Bytes of messages a room's Redis stream holds (at least ``history_bytes``);
    the oldest go first."""
    stream_ttl: float = DEFAULT_STREAM_TTL
    redis_wait: int = 0
    idempotency_window: float = DEFAULT_IDEMPOTENCY_WINDOW
    """Seconds a POST's ``Idempotency-Key`` (or a v1 publish's ``id``) names its
    first publish in a room: a repeat publishes nothing and gets the same answer."""
    """A POST is answered 200 only once this many Redis replicas have its messages
    (``WAIT``); 0: once the master has them."""
    """Seconds a room's Redis stream lives after its last message (0: for ever)."""
    instance: str | None = None
    """This process's name in /healthz (default: the address it listens on)."""
    reuse_port: bool = False
    """SO_REUSEPORT: several processes listen on one port; the kernel spreads clients."""
    trusted_proxies: TrustedProxies = field(default_factory=TrustedProxies)
    """Reverse proxies (``--trusted-proxy``) whose ``X-Forwarded-For`` names the
    client in log lines (see :mod:`trio_ws_demo.forwarded`); none by default."""
    access_log: bool = True
    """One INFO line per HTTP request on ``trio_ws_demo.access`` (``--access-log``;
    see :mod:`trio_ws_demo.server.access_log`)."""
    compression: Compression = Compression.OFF
    """permessage-deflate (RFC 7692) with every client that offers it: ``OFF``
    negotiates nothing; ``STATELESS`` compresses each broadcast once, on its
    own; ``ROOM`` keeps one compressor per room (see docs/compression.md)."""

    def __post_init__(self) -> None:
        if self.ping_interval == 0:  # 0 means off, as on the command line
            object.__setattr__(self, "ping_interval", None)
        if self.room_ttl == 0:
            object.__setattr__(self, "room_ttl", None)
        if self.room_ttl is not None and self.room_ttl < 0:
            raise ValueError("room_ttl must not be negative")
        if self.max_pending < 1:
            raise ValueError("max_pending must be positive")
        if self.max_message_size < 1 or self.max_clients < 1 or self.max_request_head < 256:
            raise ValueError("size limits must be positive (request head: at least 256 bytes)")
        if self.max_rooms < 1 or self.max_room_name < 1 or self.history < 0:
            raise ValueError("max_rooms and max_room_name must be positive, history not negative")
        if self.message_burst is None:
            burst = max(1, math.ceil(self.max_message_rate))
            object.__setattr__(self, "message_burst", burst)
        elif self.message_burst < 1:
            raise ValueError("message_burst must be positive")
        if self.rate_limit_action not in ("slow", "close"):
            raise ValueError("rate_limit_action must be 'slow' or 'close'")
        if self.max_memory < 1:
            raise ValueError("max_memory must be positive")
        if self.history_bytes < 1:
            raise ValueError("history_bytes must be positive")
        timeouts = [self.handshake_timeout, self.close_timeout, self.ping_timeout]
        if min(timeouts) <= 0 or self.shutdown_timeout < 0 or self.drain_window < 0:
            raise ValueError("timeouts must be positive")
        if self.ping_interval is not None and self.ping_interval <= 0:
            raise ValueError("ping_interval must be positive (or None to disable)")

    @property
    def scheme(self) -> str:
        return "wss" if self.ssl_context else "ws"
