"""Who is on the other end: the socket's peer, or the client a trusted proxy names.

A :class:`Peer` is made when a connection arrives; once its request head is
read, :meth:`Peer.behind` gives the client a ``--trusted-proxy`` forwarded for
(the rule is :mod:`trio_ws_demo.forwarded`'s), and every later log line of
that request (opened, closed, refused, its access line) names that client.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

import trio

from ..forwarded import TrustedProxies
from ..http import RequestHead, format_host
from ..redact import escape
from .tls import TlsChannel

__all__ = ["Peer", "forwarded_for"]

logger = logging.getLogger("trio_ws_demo.server")


class Peer:
    """The remote end of a stream, as ``host:port`` in log lines; behind a
    trusted proxy, the client's address (no port: the header has none).

    The address is read when the connection arrives (a socket closed later has
    none, and a line about a refused request must still name its peer); the
    string is made only when a log line needs it.
    """

    __slots__ = ("_address", "_text", "arrived", "via")

    def __init__(self, stream: trio.abc.Stream | None = None) -> None:
        self._address: object = _peer_address(stream) if stream is not None else None
        self._text: str | None = None
        self.arrived = trio.current_time()
        """When the connection arrived (an access line's duration starts here)."""
        self.via: Peer | None = None
        """The proxy the client came through, when a trusted one named it."""

    def __str__(self) -> str:
        if self._text is None:
            address = self._address
            if isinstance(address, tuple):
                self._text = f"{format_host(str(address[0]))}:{address[1]}"
            else:
                self._text = str(address)
            self._address = None
        return self._text

    @property
    def proxy(self) -> str | None:
        """The proxy's ``host:port``, when the client came through one."""
        return str(self.via) if self.via is not None else None

    def behind(self, proxies: TrustedProxies, forwarded_for: Iterable[str]) -> Peer:
        """The client the ``X-Forwarded-For`` lines *forwarded_for* name, if
        this connection's socket peer is in *proxies*; else the socket peer.
        A malformed header from a trusted proxy leaves the socket peer, with a
        DEBUG line saying why."""
        socket_peer = self.via or self
        lines = list(forwarded_for)
        if not proxies or not lines:
            return socket_peer
        try:
            client = proxies.client(socket_peer.host, lines)
        except ValueError as exc:
            logger.debug("%s: %s; the proxy's own address stands", socket_peer, escape(str(exc)))
            return socket_peer
        if client is None:
            return socket_peer
        forwarded = Peer()
        forwarded._text = str(client)
        forwarded.arrived = socket_peer.arrived
        forwarded.via = socket_peer
        return forwarded

    @property
    def host(self) -> str:
        """The socket peer's IP address as text ("" if it has none)."""
        address = self._address
        if isinstance(address, tuple):
            return str(address[0])
        if address is None and self._text is not None and ":" in self._text:
            return self._text.rsplit(":", 1)[0].strip("[]")
        return ""


def forwarded_for(head: RequestHead) -> list[str]:
    """Every ``X-Forwarded-For`` line of *head*, in order."""
    return [value for name, value in head.headers if name == "x-forwarded-for"]


def _peer_address(stream: trio.abc.Stream) -> object:
    transport = stream.transport if isinstance(stream, TlsChannel) else stream
    if not isinstance(transport, trio.SocketStream):
        return type(transport).__name__
    try:
        address = transport.socket.getpeername()
    except OSError:
        return "unknown peer"
    # One string per client host, however many connections it has open (a
    # peer's address is kept for the connection's life, for its log lines).
    return (sys.intern(address[0]), address[1])
