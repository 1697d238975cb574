"""The access log: one line per HTTP request, on the ``trio_ws_demo.access`` logger.

Every request the server answers gets one line at INFO, when its answer has
been written: the page, ``/rooms``, ``/metrics``, each ``POST`` of a kept-alive
publish connection, every refusal (400, 401, 403, 404, 405, 413, 426, 431, 503)
and HEAD requests alike. Its fields: the client (``peer``, resolved through a
``--trusted-proxy``; ``proxy`` names the proxy then), ``method``, the target
(``path``, with any token hidden: :func:`~trio_ws_demo.redact.redact`),
``status``, the response's ``bytes`` (head and body) and ``duration_ms``.

* A WebSocket upgrade is a request too: its line says 101, once the 101 is
  written, with the bytes of the 101 and the handshake's duration. Frames are
  not requests; the connection's own ``closed`` line tells how it went.
* The first request on a connection is timed from the connection's arrival
  (a TLS handshake and a slow head count); a later one on a kept-alive publish
  connection from when its head was read.
* A head that never parsed (400, 431) has method and target ``-``.
* Probes that succeed (``/livez``, ``/readyz``, ``/healthz`` answering 200) are
  logged at DEBUG: a load balancer asks every few seconds, and a line each
  would bury everything else. A failing probe is INFO, as any other answer.

``--access-log off`` turns it off; the server's own lines (``refused``, with
the reason; ``opened`` and ``closed``) are not access lines and stay.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from ..redact import escape, redact
from .peer import Peer

__all__ = ["ACCESS_LOG_OFF", "PROBES", "AccessLog", "SentCounter"]

logger = logging.getLogger("trio_ws_demo.access")

#: Paths whose 200 answers are logged at DEBUG.
PROBES = frozenset({"/livez", "/readyz", "/healthz"})


@dataclass(frozen=True)
class AccessLog:
    """Writes access lines (or, *enabled* False, nothing)."""

    enabled: bool = True

    def record(
        self,
        peer: Peer,
        method: str | None,
        target: str | None,
        status: int,
        sent: int,
        began: float | None = None,
    ) -> None:
        """One line for a request answered *status* with *sent* bytes; its
        duration runs from *began* (default: the connection's arrival)."""
        if not self.enabled:
            return
        probe = status == 200 and target is not None and target.partition("?")[0] in PROBES
        level = logging.DEBUG if probe else logging.INFO
        if not logger.isEnabledFor(level):
            return
        duration_ms = (trio.current_time() - (peer.arrived if began is None else began)) * 1000
        method = escape(method) if method else "-"
        path = redact(target) if target is not None else "-"
        client = str(peer)
        fields: dict[str, object] = {
            "event": "access",
            "peer": client,
            "method": method,
            "path": path,
            "status": status,
            "bytes": sent,
            "duration_ms": round(duration_ms, 3),
        }
        if peer.via is not None:
            fields["proxy"] = str(peer.via)
        logger.log(
            level,
            '%s "%s %s" %d %d %.1fms',
            client,
            method,
            path,
            status,
            sent,
            duration_ms,
            extra=fields,
        )


#: No access lines (the default of the settings that hold one, for library users).
ACCESS_LOG_OFF = AccessLog(enabled=False)


class SentCounter(trio.abc.Stream):
    """A stream that counts the bytes written through it (:attr:`sent`), for an
    access line. Everything else passes to the stream it wraps; it is not
    half-closeable, so :func:`~trio_ws_demo.server.http_io.linger` is given
    the wrapped stream itself."""

    __slots__ = ("sent", "stream")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.sent = 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)
        self.sent += len(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.stream.aclose()
