"""The front door: everything between an accepted socket and an open WebSocket.

Each new connection passes here, within ``handshake_timeout``: TLS (for
``wss://``), then one HTTP request head (see :mod:`trio_ws_demo.http`), bounded in size
and time so that garbage and slowloris clients never reach the WebSocket
layer. The head is then routed:

==========================================================  ======
what the client sent                                        answer
==========================================================  ======
a plain HTTP request (not an upgrade)                       web.py
not HTTP, or a malformed head, or a non-ASCII ``Host``      400
a target with a non-ASCII byte, or that does not split      400
a TLS ClientHello on a plain ``ws://`` port                 400 (at once)
a head larger than the limit                                431
an upgrade over HTTP/1.0, or with a body                    400
an upgrade with a wrong ``Sec-WebSocket-Version``            426
an upgrade without a valid ``Sec-WebSocket-Key``             400
an ``Origin`` not on the allow-list (when one is set)        403
no valid token (when one is set)                            401
a ``?name=`` or ``sub`` with control or bidi characters     400
one client too many                                         503
an upgrade while the server drains (SIGTERM)                503
a valid upgrade                                             admitted
==========================================================  ======

Every refusal is a complete HTTP response with ``Connection: close``, and is
counted under a fixed reason (:mod:`.reasons`), never under its text. An
admitted upgrade goes on to :class:`~trio_ws_demo.server.connection.Connection`,
which writes the 101 (:func:`~trio_ws_demo.handshake.accept_response`): no
other code parses the head, and nothing but an HTTP answer is ever written
before it. At most ``max_pending`` heads are read at once (see
:func:`~trio_ws_demo.server.listen.accept_loop`).
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio

from ..access import Use
from ..budget import MemoryBudget
from ..envelopes import SUBPROTOCOL
from ..handshake import check_upgrade
from ..http import HttpRefusal, RequestHead
from ..reasons import Reason, Refusal, reason_of
from ..redact import escape, redact
from ..rooms import RESERVED_PATHS, RoomNameError, Rooms, room_from_path
from ..tokens import Grant
from .access_log import AccessLog, SentCounter
from .http_io import linger, read_request_head, send_error
from .options import ServerOptions
from .peer import Peer, forwarded_for
from .tls import TlsChannel
from .web import WebRoutes

__all__ = ["Admission", "FrontDoor", "PublishRequest"]

logger = logging.getLogger("trio_ws_demo.server")


@dataclass(frozen=True)
class Admission:
    """An upgrade the front door let in, and what it asked for."""

    stream: trio.abc.Stream
    head: RequestHead
    peer: Peer
    """Who asked: the client a trusted proxy named, else the socket's peer."""
    room: str
    v1: bool
    """The client speaks ``trio-ws-demo.v1`` (JSON envelopes, offsets, resume)."""
    since: tuple[int, str] | None
    """``?since=N&epoch=E``: resume after offset N of that epoch."""
    grant: Grant
    """What the client may do (from its credential)."""
    own: bool = True
    """It gets its own messages back (``?self=0``: a v1 client that does not;
    it still gets the ack of a ``publish``, so it knows each one's offset)."""


@dataclass(frozen=True)
class PublishRequest:
    """A ``POST`` to a room: the HTTP publish API takes the connection from here."""

    stream: trio.abc.Stream
    head: RequestHead
    peer: Peer


#: An admitted upgrade's room, v1, since, grant and own (the fields of Admission after head).
_Upgrade = tuple[str, bool, tuple[int, str] | None, Grant, bool]


class FrontDoor:
    """Reads, routes and refuses; admits valid WebSocket upgrades."""

    def __init__(
        self,
        options: ServerOptions,
        web: WebRoutes,
        clients: Callable[[], int],
        rooms: Rooms,
        memory: MemoryBudget | None = None,
        access_log: AccessLog | None = None,
    ) -> None:
        self._options = options
        self._access_log = access_log or AccessLog(options.access_log)
        self._memory = memory
        """The process's memory budget: a join it has no room for gets 503."""
        self._web = web
        self._clients = clients
        self._rooms = rooms
        self.rejections: collections.Counter[Reason] = collections.Counter()
        """Refused handshakes, by reason: a fixed vocabulary (:class:`Reason`),
        never request data, so that it cannot grow with what clients send."""
        self._in_progress: dict[trio.CancelScope, float] = {}
        """Handshakes in progress and when each began, oldest first."""
        self._closed = False
        self._draining = False
        self._holding: str | None = None

    def hold(self, why: str | None) -> None:
        """Refuse new WebSocket upgrades with 503 ``server starting`` and
        ``Retry-After`` while *why* is set (``"starting"``: the backplane is
        being reached); None admits them again. Plain HTTP is answered."""
        self._holding = why

    def drain(self) -> None:
        """Refuse new WebSocket upgrades with 503 and ``Retry-After`` (a drain):
        a client that a load balancer still sends here, or that reconnects at
        once, is told to go elsewhere rather than admitted only to be closed.
        Plain HTTP (``/readyz``, a ``POST``) is answered as before."""
        self._draining = True

    def close(self) -> None:
        """Stop admitting: cancel the handshakes in progress (for shutdown)."""
        self._closed = True
        for scope in self._in_progress:
            scope.cancel()

    def drop_oldest(self, older_than: float) -> bool:
        """Drop the oldest handshake in progress if it began *older_than* seconds
        ago or more (a head that slow is a slowloris, not a storm); True if one was."""
        for scope, began in self._in_progress.items():
            if trio.current_time() - began < older_than or scope.cancel_called:
                continue
            scope.cancel()
            return True
        return False

    async def admit(self, stream: trio.abc.Stream, peer: Peer) -> Admission | PublishRequest | None:
        """The (possibly TLS) stream and the request of an admitted upgrade, a
        publish request (served outside the handshake's time limit), or None.

        None means the connection was answered, refused, timed out or lost,
        and is closed. The caller must register an admitted connection before
        its next checkpoint, so that ``max_clients`` holds.
        """
        with trio.move_on_after(self._options.handshake_timeout) as handshake:
            self._in_progress[handshake] = trio.current_time()
            try:
                if self._closed:
                    handshake.cancel()
                stream = await self._start_tls(stream)
                head = await read_request_head(stream, self._options.max_request_head)
                if isinstance(head, RequestHead):
                    peer = peer.behind(self._options.trusted_proxies, forwarded_for(head))
                if (
                    isinstance(head, RequestHead)
                    and head.method == "POST"
                    and not head.is_websocket_upgrade
                    and head.path not in RESERVED_PATHS
                ):
                    return PublishRequest(stream, head, peer)
                elif head is not None:
                    upgrade = await self._route(stream, head, peer)
                    if upgrade is not None:
                        assert isinstance(head, RequestHead)
                        return Admission(stream, head, peer, *upgrade)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                # The peer went away (or failed TLS): nothing to answer.
                logger.debug("%s: connection lost: %s", peer, exc.__cause__ or exc)
            finally:
                self._in_progress.pop(handshake, None)
        if handshake.cancelled_caught and not self._closed:
            if trio.current_time() >= handshake.deadline:
                self.rejections[Reason.HANDSHAKE_TIMEOUT] += 1
                logger.debug("%s: handshake timed out", peer)
            else:
                self.rejections[Reason.TOO_MANY_PENDING] += 1
                logger.info("%s: dropped: too many pending heads, and this one the oldest", peer)
        await trio.aclose_forcefully(stream)
        return None

    async def refuse_if_full(
        self, stream: trio.abc.Stream, peer: Peer, head: RequestHead, room: str, needed: int = 0
    ) -> bool:
        """Check the limits again after an await (the backplane loading *room*):
        other connections may have taken the last places meanwhile, and the
        joiner's backfill (*needed* bytes) must fit the memory budget. True if it
        refused (and closed) the connection; the caller registers it otherwise,
        before its next checkpoint."""
        refusal = self._limits_refusal(room, needed)
        if refusal is None:
            return False
        await self._refuse(stream, refusal, peer, head)
        await trio.aclose_forcefully(stream)
        return True

    def _limits_refusal(self, room: str, needed: int = 0) -> HttpRefusal | None:
        if self._draining:  # soon gone: come back in a second (through the balancer)
            return HttpRefusal(503, "server draining", [("Retry-After", "1")])
        if self._holding is not None:  # not serving yet: come back in a second
            return HttpRefusal(503, f"server {self._holding}", [("Retry-After", "1")])
        if self._clients() >= self._options.max_clients:
            return HttpRefusal(503, "too many clients", [("Retry-After", "5")])
        memory = self._memory
        if memory is not None and not memory.fits(max(needed, 1)):
            return HttpRefusal(503, "server overloaded", [("Retry-After", "5")])
        if not self._rooms.has_room_for(room):
            return HttpRefusal(503, "too many rooms", [("Retry-After", "5")])
        return None

    async def _start_tls(self, stream: trio.abc.Stream) -> trio.abc.Stream:
        if self._options.ssl_context is None:
            return stream
        if not isinstance(stream, trio.SocketStream):
            raise TypeError("wss:// needs a socket stream")
        tls = TlsChannel(stream, self._options.ssl_context)
        await tls.do_handshake()
        return tls

    async def _route(
        self, stream: trio.abc.Stream, head: RequestHead | HttpRefusal, peer: Peer
    ) -> _Upgrade | None:
        """Answer or refuse *head*; for an upgrade we admit, its room, v1, since
        and grant."""
        if isinstance(head, HttpRefusal):
            await self._refuse(stream, head, peer, None)
            return None
        if not head.is_websocket_upgrade:
            counted = SentCounter(stream)
            status = await self._web.answer(counted, head)
            self._access_log.record(peer, head.method, head.target, status, counted.sent)
            await linger(stream)
            return None
        upgrade = self._check_upgrade(head)
        if isinstance(upgrade, HttpRefusal):
            await self._refuse(stream, upgrade, peer, head)
            return None
        return upgrade

    def _check_upgrade(self, head: RequestHead) -> HttpRefusal | _Upgrade:
        refusal = check_upgrade(head)
        if refusal is not None:
            return refusal
        try:
            room = room_from_path(head.path, self._options.max_room_name)
        except RoomNameError as exc:
            return Refusal(400, str(exc), label=exc.label)
        grant = self._options.access.admit(head, room, time.time(), Use.CONNECT)
        if isinstance(grant, HttpRefusal):
            return grant
        # Exactly as offered: a case variant is simply not selected (RFC 6455 §4.1).
        offered = head.header_tokens("sec-websocket-protocol", exact=True)
        v1 = not self._options.echo and SUBPROTOCOL in offered
        since = None
        query = head.query
        if v1 and ("since" in query or "epoch" in query):
            try:
                since = (int(query["since"][0]), query["epoch"][0])
            except (KeyError, ValueError):
                return HttpRefusal(400, "resume needs ?since=OFFSET&epoch=EPOCH")
        own = True
        if "self=" in head.target and "self" in query:  # (most handshakes have no query)
            if query["self"][0] not in ("0", "1") or not v1:
                return HttpRefusal(400, "?self= is 0 or 1, for a trio-ws-demo.v1 client")
            own = query["self"][0] == "1"
        return self._limits_refusal(room) or (room, v1, since, grant, own)

    async def _refuse(
        self, stream: trio.abc.Stream, refusal: HttpRefusal, peer: Peer, head: RequestHead | None
    ) -> None:
        reason = reason_of(refusal)
        self.rejections[reason] += 1
        # The detail may hold request data (PyJWT's words): escaped, and only here
        # and in the body; the counter and the "reason" field are the fixed name.
        path = redact(head.target) if head else None
        detail = escape(refusal.reason)
        logger.info(
            "%s refused: HTTP %d %s%s",
            peer,
            refusal.status,
            detail,
            f" ({head.method} {path})" if head else "",
            extra={
                "event": "refused",
                "peer": str(peer),
                "path": path,
                "status": refusal.status,
                "reason": str(reason),
            },
        )
        counted = SentCounter(stream)
        await send_error(counted, refusal.status, refusal.reason, headers=refusal.headers)
        self._access_log.record(
            peer, head.method if head else None, head.target if head else None,
            refusal.status, counted.sent,
        )  # fmt: skip
        await linger(stream)
