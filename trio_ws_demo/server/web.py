"""Plain HTTP on the WebSocket port: the chat page, ``/healthz`` and ``/metrics``.

Browsers are the main WebSocket clients and operators expect a health check
and metrics on the port they already expose, so a request that is not a
WebSocket upgrade is answered here (the front door in
:mod:`trio_ws_demo.server.frontdoor` has already read and bounded its head):

=============  ===============================================  ==========
path           answer                                           methods
=============  ===============================================  ==========
``/``, a room  the chat page (``static/chat.html``, no CDN),    GET, HEAD
               which joins the room its path names
``/healthz``   ``{"status": "ok", "clients": N}``; with         GET, HEAD
               ``--redis`` also ``"backplane": "up"``, and 503
               with ``"backplane": "down"`` while Redis is away;
               ``"redis": {"master": "HOST:PORT"}`` names the
               Redis last reached (the sentinels' master)
``/livez``     200 ``{"status": "alive"}`` while the event      GET, HEAD
               loop answers
``/readyz``    200 ``{"status": "ready"}`` while serving, 503    GET, HEAD
               ``"draining"`` from the start of a drain
               (SIGTERM), 503 ``"starting"`` until Redis is
               reached, 503 ``"not ready"`` once shutting
               down; a Redis outage does not make
               it 503 (``"backplane": "down"`` says it)
``/health``    404: reserved, so a mistyped probe fails         GET, HEAD
``/metrics``   Prometheus text (:mod:`..exposition`)           GET, HEAD
               (behind the shared ``--token``, or a signed
               token that may read ``**``, when one is set)
``/rooms``     JSON: each room's clients and history size,      GET, HEAD
               by name, at most ``?limit=`` (default and
               most: 1000); ``next`` is an opaque cursor (null
               on the last page): ``?cursor=NEXT`` is the page
               after it, no cursor the first (behind the
               token: the rooms its credential may read)
``/rooms/R``   JSON: who is in room R (``name``, ``since``),    GET, HEAD
               on every process with ``--redis``, earliest
               first, paged like ``/rooms`` (``next`` is the
               ``?after=`` of the next page; behind the
               token: R's read right)
``POST /R``    the HTTP publish API (:mod:`.publish`)           POST
anything else  404                                              (405 for
                                                                other methods)
=============  ===============================================  ==========

Every error answered here is JSON, ``{"error": "..."}``, as the publish API's are.

Every answer carries ``Connection: close``: one request per connection keeps
this side simple, and browsers open the WebSocket on a new connection anyway.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from functools import cache
from importlib import resources

import trio

from ..access import Use
from ..exposition import CONTENT_TYPE, Exposition
from ..http import HttpRefusal, RequestHead
from ..rooms import RESERVED_PREFIX, Rooms, room_from_path
from ..stats import ServerStatistics
from ..tokens import Grant
from .http_io import send_error, send_response
from .options import ServerOptions
from .process_metrics import ProcessMetrics

logger = logging.getLogger("trio_ws_demo.server")

__all__ = ["WebRoutes"]

#: Rooms in one /rooms answer (at 10,000 rooms the whole list was 2.1 MB).
ROOMS_PAGE = 1000
_BAD_LIMIT = f"?limit= takes a number from 1 to {ROOMS_PAGE}"
_BAD_CURSOR = "?cursor= takes the next of a previous page"


@cache
def chat_page() -> bytes:
    """The chat page, read once from the package data."""
    return resources.files("trio_ws_demo").joinpath("static/chat.html").read_bytes()


def _server_metrics(s: ServerStatistics, out: Exposition) -> None:
    """The server's statistics, read at scrape time (never per message), as metrics."""

    def gauge(name: str, doc: str, value: int) -> None:
        out.gauge(f"trio_ws_demo_{name}", doc, value)

    def counter(name: str, doc: str, value: int) -> None:
        out.counter(f"trio_ws_demo_{name}", doc, value)

    gauge("clients", "WebSocket clients connected now.", s.clients)
    counter("connections", "WebSocket connections accepted.", s.connections_total)
    counter("messages_received", "Messages received from WebSocket clients.", s.messages_in)
    counter(
        "http_published",
        "Messages published by HTTP POST (each line of a batch counts).",
        s.http_published,
    )
    out.counter_by(
        "trio_ws_demo_http_publishes",
        "POST /<room> requests answered, by HTTP status.",
        "status",
        ((str(status), count) for status, count in sorted(s.http_publishes.items())),
    )
    _histograms(s, out)
    counter("received_bytes", "Bytes of messages received (as frames).", s.bytes_in)
    counter("messages_delivered", "Messages written to clients.", s.delivered)
    counter("delivered_bytes", "Bytes of frames written to clients.", s.delivered_bytes)
    counter(
        "socket_writes",
        "Writes to client sockets (a coalesced write carries several messages).",
        s.writes,
    )
    counter("slow_clients_closed", "Clients closed as slow consumers.", s.slow_closed)
    counter("messages_dropped", "Messages dropped for slow clients.", s.dropped)
    counter(
        "connection_errors",
        "Connections ended by an unexpected server error (closed 1011).",
        s.connection_errors,
    )
    out.counter_by(
        "trio_ws_demo_handshake_rejections",
        "Connections refused before a WebSocket opened, by reason.",
        "reason",
        sorted(s.rejections.items()),
    )
    gauge("rooms", "Rooms with clients or history.", s.rooms)
    gauge("history_messages", "Messages kept in every room's history.", s.history_messages)
    gauge("history_bytes", "Bytes kept in every room's history.", s.history_bytes)
    gauge("inbox_messages", "Messages queued for all clients.", s.queued_messages)
    gauge("inbox_bytes", "Bytes queued for all clients.", s.queued_bytes)
    gauge(
        "memory_budget_used_bytes",
        "Bytes of --max-memory held for peers now (each queued frame once).",
        s.memory_used,
    )
    gauge("memory_budget_bytes", "The memory budget, --max-memory.", s.memory_limit)
    counter(
        "memory_budget_refusals",
        "Messages, joins and POSTs refused because --max-memory was full.",
        s.memory_refused,
    )
    gauge("inbox_max_messages", "Messages queued for the most backed-up client.", s.max_inbox)
    if s.backplane is None:
        return
    b = s.backplane
    gauge("backplane_up", "1 while the link to Redis works, else 0.", int(b.up))
    counter("backplane_reconnects", "Times the Redis link came back.", b.reconnects)
    counter("backplane_sent", "Messages written to Redis.", b.sent)
    counter("backplane_received", "Messages read from Redis.", b.received)
    counter("backplane_dropped", "Messages that did not fit the queue to Redis.", b.dropped)
    gauge("backplane_queued", "Messages waiting to be written to Redis.", b.queued)
    counter("backplane_skipped", "Malformed Redis stream entries skipped.", b.skipped)
    counter("backplane_refused", "Messages Redis refused: delivered nowhere.", b.refused)
    gauge(
        "backplane_rooms_not_followed",
        "Rooms with clients here that do not follow their Redis stream.",
        b.not_followed,
    )
    counter(
        "backplane_own_recognised",
        "Own messages read back from Redis after they were delivered here "
        "unconfirmed (not sent again).",
        b.own_recognised,
    )
    if b.master is not None:
        out.info(
            "trio_ws_demo_backplane_master",
            "The Redis last reached (with redis+sentinel://, the master the sentinels named).",
            {"address": b.master},
        )


def _histograms(s: ServerStatistics, out: Exposition) -> None:
    """The three durations (see docs/metrics.md), as Prometheus histograms."""
    for name, doc, snapshot in (
        (
            "delivery_lag_seconds",
            "Seconds from a message's own time (its publisher's clock) to its fan-out here.",
            s.delivery_lag,
        ),
        (
            "broadcast_duration_seconds",
            "Seconds one message's fan-out to this process's clients took.",
            s.broadcast_duration,
        ),
        (
            "handshake_duration_seconds",
            "Seconds from accepting a connection to its 101 written (TLS included).",
            s.handshake_duration,
        ),
    ):
        if snapshot is not None:
            out.histogram(f"trio_ws_demo_{name}", doc, snapshot)


class WebRoutes:
    """Answers non-upgrade requests."""

    def __init__(
        self,
        statistics: Callable[[], ServerStatistics],
        rooms: Rooms,
        options: ServerOptions,
        instance: Callable[[], str] = lambda: "",
        elsewhere: Callable[[str], Awaitable[list[tuple[str, float]]]] | None = None,
        readiness: Callable[[], str] = lambda: "ready",
    ) -> None:
        self._statistics = statistics
        self._readiness = readiness
        """What ``/readyz`` says: ``"ready"`` (200), else ``"draining"`` or
        ``"not ready"`` (503)."""
        self._elsewhere = elsewhere
        """Who is in a room on the other processes (with --redis), read on demand."""
        self._instance = instance
        self._rooms = rooms
        self._options = options
        # The process's own RSS, open fds and CPU (process_resident_memory_bytes, ...),
        # as every Prometheus client exports them: for operators of several processes.
        self._process = ProcessMetrics()

    def metrics_text(self) -> bytes:
        """The Prometheus text of this moment (:mod:`trio_ws_demo.exposition`)."""
        out = Exposition()
        _server_metrics(self._statistics(), out)
        self._process.write(out)
        return out.text()

    async def answer(self, stream: trio.abc.Stream, head: RequestHead) -> int:
        """Write the response; return its status."""
        if head.method not in ("GET", "HEAD"):
            allow = [("Allow", "GET, HEAD")]
            await send_error(stream, 405, "method not allowed", headers=allow)
            return 405
        head_only = head.method == "HEAD"
        path = head.path
        if path in ("/livez", "/readyz"):
            return await self._probe(stream, path, head_only)
        if path == "/healthz":
            stats = self._statistics()
            health: dict[str, object] = {"status": "ok", "clients": stats.clients}
            if self._instance():
                health["instance"] = self._instance()
            if stats.backplane is not None:
                backplane = stats.backplane
                health["backplane"] = backplane.health
                if backplane.master is not None:
                    health["redis"] = {"master": backplane.master}
                if backplane.not_followed:
                    health["rooms_not_followed"] = backplane.not_followed
                if backplane.refusing:
                    health["redis_refuses_messages"] = True
                if backplane.health != "up":
                    # Cut off from the other processes, or some rooms are: a
                    # load balancer should send new clients elsewhere.
                    health["status"] = "degraded"
                    body = json.dumps(health).encode()
                    await send_response(
                        stream, 503, body=body, content_type="application/json", head_only=head_only
                    )
                    return 503
            body = json.dumps(health).encode()
            content_type = "application/json"
        elif path in ("/metrics", "/rooms") or path.startswith(RESERVED_PREFIX):
            name = path[len(RESERVED_PREFIX) :]
            if path not in ("/metrics", "/rooms") and not _is_room(
                "/" + name, self._options.max_room_name
            ):
                await send_error(stream, 404, "not a room", head_only=head_only)
                return 404
            use = {"/metrics": Use.METRICS, "/rooms": Use.ROOMS}.get(path, Use.ROOM)
            room = name if use is Use.ROOM else None
            grant = self._options.access.admit(head, room, time.time(), use)
            if isinstance(grant, HttpRefusal):
                await send_error(
                    stream, grant.status, grant.reason, headers=grant.headers, head_only=head_only
                )
                return grant.status
            if path == "/metrics":
                body, content_type = self.metrics_text(), CONTENT_TYPE
            elif path == "/rooms":
                page = self._rooms_page(head.query_string, grant)
                if isinstance(page, str):
                    await send_error(stream, 400, page, head_only=head_only)
                    return 400
                body, content_type = page, "application/json"
            else:
                who = await self._who(name, head.query)
                if who is None:
                    await send_error(stream, 400, _BAD_LIMIT, head_only=head_only)
                    return 400
                body, content_type = who, "application/json"
        elif _is_room(path, self._options.max_room_name):
            body, content_type = chat_page(), "text/html; charset=utf-8"
        else:
            await send_error(stream, 404, "not found", head_only=head_only)
            return 404
        await send_response(
            stream,
            200,
            body=body,
            content_type=content_type,
            head_only=head_only,
            headers=[("X-Content-Type-Options", "nosniff")],
        )
        return 200

    async def _probe(self, stream: trio.abc.Stream, path: str, head_only: bool) -> int:
        """``/livez``: 200 while the event loop answers (this answer is the
        proof). ``/readyz``: 200 while serving, 503 while starting, draining or
        shutting down (a drain says so: a load balancer that reads it has the
        drain's window to send new clients elsewhere). A Redis outage leaves a
        process ready, since it still serves its own clients (behind a load
        balancer, one outage must not pull the whole fleet): it shows as
        ``"backplane": "down"`` here and in /metrics."""
        if path == "/livez":
            status, answer = 200, {"status": "alive"}
        else:
            readiness = self._readiness()
            status = 200 if readiness == "ready" else 503
            answer = {"status": readiness}
            backplane = self._statistics().backplane
            if backplane is not None:
                answer["backplane"] = backplane.health
        if self._instance():
            answer["instance"] = self._instance()
        body = json.dumps(answer).encode()
        await send_response(
            stream, status, body=body, content_type="application/json", head_only=head_only
        )
        return status

    async def _who(self, name: str, query: dict[str, list[str]]) -> bytes | None:
        """One page of room *name*'s members, earliest first; None for a bad ``?limit=``.

        Paged like ``/rooms`` (``?limit=``, at most :data:`ROOMS_PAGE`, and
        ``?after=``): 2,500 members with 64-character names were one 251 KiB
        answer, which anyone could ask for (finding T17). Names are not
        unique, so the cursor is the last member's join time and name,
        ``"<since> <name>"`` as ``next`` gives it: members are ordered by
        both, and a page starts after the cursor however many left meanwhile.
        """
        limit = _limit(query)
        if limit is None:
            return None
        room = self._rooms.get(name)
        found = room.who() if room is not None else []
        if (room is None or not room.clients) and self._elsewhere is not None:
            # Presence syncs only the rooms with clients here: ask Redis.
            found += await self._read_elsewhere(name)
        members = sorted(found, key=lambda m: (m[1], m[0]))
        cursor = query.get("after", [None])[0]
        if cursor is not None:
            after = _member_cursor(cursor)
            members_after = [m for m in members if after is None or (m[1], m[0]) > after]
        else:
            members_after = members
        page = members_after[:limit]
        last = page[-1] if page else None
        return json.dumps(
            {
                "room": name,
                "clients": len(members),
                "next": f"{last[1]!r} {last[0]}" if last and len(members_after) > limit else None,
                "members": [{"name": who, "since": round(since, 3)} for who, since in page],
            }
        ).encode()

    async def _read_elsewhere(self, name: str) -> list[tuple[str, float]]:
        assert self._elsewhere is not None
        try:
            with trio.fail_after(2.0):
                return await self._elsewhere(name)
        except Exception as exc:  # Redis is slow or refuses: this process's own only
            logger.debug("could not read room %r's members from Redis: %s", name, exc)
            return []

    def _rooms_page(self, query_string: str, grant: Grant) -> bytes | str:
        """One page of the rooms *grant* may read, by name; the error's text
        for a bad ``?limit=`` or ``?cursor=``.

        The cursor is opaque (:func:`_room_cursor`): the lobby's name is "",
        so a cursor that was the name itself could not tell "after the lobby"
        from "from the start". No ``?cursor=`` is the first page; an empty or
        unknown one is an error, never silently the first page again.
        """
        query = urllib.parse.parse_qs(query_string, keep_blank_values=True)
        if "after" in query:
            return "/rooms pages with ?cursor= (the next of the previous page), not ?after="
        limit = _limit(query)
        if limit is None:
            return _BAD_LIMIT
        after: str | None = None
        if "cursor" in query:
            after = _after_room(query["cursor"][0])
            if after is None:
                return _BAD_CURSOR
        rooms = sorted(
            (
                room
                for room in self._rooms.rooms()
                if (after is None or room.name > after) and grant.can_read(room.name)
            ),
            key=lambda room: room.name,
        )
        page = rooms[:limit]
        return json.dumps(
            {
                "total": len(self._rooms),
                "next": _room_cursor(page[-1].name) if len(rooms) > limit else None,
                "rooms": [
                    {
                        "room": room.name,
                        "clients": room.clients,
                        "history": room.history_messages,
                        "history_bytes": room.history_bytes,
                        "offset": room.last_offset,
                        "epoch": room.epoch,
                    }
                    for room in page
                ],
            }
        ).encode()


def _room_cursor(name: str) -> str:
    """The ``next`` of a /rooms page that ends with room *name*: ``r`` and the
    name in unpadded base64url, never empty (the lobby's is ``r``)."""
    return "r" + base64.urlsafe_b64encode(name.encode()).decode("ascii").rstrip("=")


def _after_room(cursor: str) -> str | None:
    """The room name a :func:`_room_cursor` token names; None if it is not one."""
    if not cursor.startswith("r") or not cursor.isascii():
        return None
    encoded = cursor[1:]
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        name = raw.decode("utf-8")
    except (ValueError, UnicodeDecodeError):  # binascii.Error is a ValueError
        return None
    return name if _room_cursor(name) == cursor else None  # one spelling per name


def _limit(query: dict[str, list[str]]) -> int | None:
    """``?limit=`` of a paged answer (default and most :data:`ROOMS_PAGE`); None if bad."""
    try:
        limit = int(query.get("limit", [str(ROOMS_PAGE)])[0])
    except ValueError:
        return None
    return limit if 1 <= limit <= ROOMS_PAGE else None


def _member_cursor(cursor: str) -> tuple[float, str] | None:
    """The (since, name) a member page's ``?after=`` names; None (from the
    start) if it is not one that ``next`` gave."""
    since, _, name = cursor.partition(" ")
    try:
        value = float(since)
    except ValueError:
        return None
    return (value, name) if math.isfinite(value) else None


def _is_room(path: str, max_length: int) -> bool:
    try:
        room_from_path(path, max_length)
    except ValueError:
        return False
    return True
