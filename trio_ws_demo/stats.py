"""Server-wide counters, and the typed snapshot that ``/metrics`` and tests read.

Counters are plain attributes bumped on the hot path (no locks: one Trio
thread); :class:`ServerStatistics` is assembled only when someone asks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .histogram import HistogramSnapshot

__all__ = ["BackplaneStatistics", "ServerStatistics", "Traffic"]


@dataclass(frozen=True)
class BackplaneStatistics:
    """A snapshot of the Redis backplane's link (plain data: the backplane fills it)."""

    up: bool
    reconnects: int
    """Times the link came back after it was lost."""
    sent: int
    """Messages written to Redis."""
    received: int
    """Entries read from Redis and published here."""
    dropped: int
    """Messages that did not fit the outbound queue while Redis was slow."""
    queued: int
    skipped: int = 0
    """Malformed stream entries skipped (never delivered, never fatal)."""
    refused: int = 0
    """Messages Redis refused (OOM, READONLY, ...): delivered nowhere."""
    not_followed: int = 0
    """Rooms here that do not follow their stream while the link is up."""
    refusing: bool = False
    """Redis refused a message in the last 10 s."""
    own_recognised: int = 0
    """Own messages read back after they were delivered here unconfirmed."""
    master: str | None = None
    """The Redis last reached, ``HOST:PORT`` (with ``redis+sentinel://``, the
    master the sentinels named); None before the first connection."""

    @property
    def health(self) -> str:
        """``up``, ``down`` or ``degraded`` (up, but a room is not followed or
        Redis refuses messages)."""
        if not self.up:
            return "down"
        return "degraded" if self.not_followed or self.refusing else "up"


class Traffic:
    """Messages and bytes through the server, shared by every connection."""

    __slots__ = ("bytes_in", "delivered", "delivered_bytes", "messages_in", "writes")

    def __init__(self) -> None:
        self.messages_in = 0
        self.bytes_in = 0
        self.delivered = 0
        self.delivered_bytes = 0
        self.writes = 0
        """Writes to client sockets (see :attr:`ServerStatistics.writes`)."""


@dataclass(frozen=True)
class ServerStatistics:
    """A snapshot of :meth:`~trio_ws_demo.server.BroadcastServer.statistics`."""

    clients: int
    """WebSocket clients connected now (counting handshakes just admitted)."""
    subscribers: int
    """Clients the hub is still delivering to."""
    connections_total: int
    messages_in: int
    """Messages received from WebSocket clients."""
    bytes_in: int
    published: int
    delivered: int
    delivered_bytes: int
    dropped: int
    slow_closed: int
    queued_messages: int
    queued_bytes: int
    max_inbox: int
    """Messages queued for the most backed-up client."""
    rooms: int = 0
    history_messages: int = 0
    """Messages kept in every room's history."""
    history_bytes: int = 0
    rejections: dict[str, int] = field(default_factory=dict)
    """Refused handshakes, by reason: the names of :class:`~.reasons.Reason` only."""
    connection_errors: int = 0
    memory_used: int = 0
    """Bytes of the memory budget (--max-memory) held now."""
    memory_limit: int = 0
    memory_refused: int = 0
    """Requests for room the memory budget refused."""
    http_published: int = 0
    """Messages published by ``POST /<room>`` (a batch counts each line)."""
    http_publishes: dict[int, int] = field(default_factory=dict)
    """``POST /<room>`` requests answered, by the answer's status."""
    delivery_lag: HistogramSnapshot | None = None
    """Seconds from each message's own time to its fan-out on this process."""
    broadcast_duration: HistogramSnapshot | None = None
    """Seconds each fan-out to this process's clients took."""
    handshake_duration: HistogramSnapshot | None = None
    """Seconds from accepting a connection to its 101 written (TLS included)."""
    writes: int = 0
    """Writes to client sockets: each non-blocking ``send()`` and each awaited
    write of a backlog (one write, though a full socket may take it in parts).
    Below :attr:`delivered` when writes are coalesced (several frames in one
    write); the ratio of the two is what coalescing saves in system calls."""
    backplane: BackplaneStatistics | None = None
    """None without ``--redis``."""
    """Connections ended by an unexpected error in the server (logged, closed 1011)."""
