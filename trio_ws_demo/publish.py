"""The HTTP publish API: ``POST /<room>`` on the WebSocket port, for backends.

A web application that wants to tell a room's browsers "order 17 shipped"
should not have to speak WebSocket. It POSTs the message; every client of the
room gets it exactly as if a WebSocket client had sent it (history, offsets,
v1 envelopes; with ``--redis``, on every process).

- ``text/plain`` (or no type): one text message, which must be UTF-8;
  ``application/octet-stream``: one binary message;
  ``application/x-ndjson``: one text message per line, in order (a batch).
- ``200 {"room", "epoch", "offset"}``: the offset of the last message; a batch
  also has ``"count"``.
- 401 no or bad credential, 403 no right to publish there (a signed token
  needs ``publish: true`` and the write right), 400 a bad room name or body,
  413 a body over ``--max-message-size`` or a batch over ``--max-batch``
  lines, 408 a request not complete within ``--handshake-timeout``, 503 Redis
  unavailable or refusing (nothing was delivered, unless the answer was lost
  after Redis took it: a retry may then deliver twice).

HTTP/1.1 keep-alive through h11, so one connection carries many requests; a
connection idle for ``--handshake-timeout`` is closed. The front door has read
the first head already (to route it); h11 parses it again from that head and
owns the connection from there.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import h11
import trio

from .backplane import BackplaneUnavailable, RedisBackplane
from .handshake import AccessPolicy
from .http import HttpRefusal, RequestHead
from .rooms import Rooms, room_from_path

__all__ = ["DEFAULT_MAX_BATCH", "PublishApi", "PublishSettings"]

logger = logging.getLogger("trio_ws_demo.server")

DEFAULT_MAX_BATCH = 1000
_NDJSON = "application/x-ndjson"
_BINARY = "application/octet-stream"
_TEXT = "text/plain"
_RETRY = [("Retry-After", "5")]


@dataclass(frozen=True)
class PublishSettings:
    access: AccessPolicy
    max_message_size: int
    max_batch: int
    max_room_name: int
    timeout: float
    max_request_head: int
    max_connections: int = 10_000
    """Publishing connections open at once (``--max-clients``): one more gets 503."""


class _Answer(Exception):
    """An answer other than 200; ``close`` when the request was not read whole."""

    def __init__(
        self,
        status: int,
        reason: str,
        *,
        close: bool = False,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.close = close
        self.headers = headers or []


class PublishApi:
    """Serves one connection's publish requests (see the module's docstring)."""

    def __init__(
        self,
        settings: PublishSettings,
        rooms: Rooms,
        backplane: Callable[[], RedisBackplane | None],
    ) -> None:
        self._settings = settings
        self._rooms = rooms
        self._backplane = backplane
        self.published = 0
        """Messages published over HTTP (all connections)."""
        self.requests = 0
        self.connections = 0
        """Publishing connections open now (kept alive between requests)."""

    async def serve(self, stream: trio.abc.Stream, head: RequestHead, peer: object) -> None:
        """Answer the request in *head* and what follows on the connection."""
        settings = self._settings
        connection = h11.Connection(h11.SERVER, max_incomplete_event_size=settings.max_request_head)
        connection.receive_data(_head_bytes(head) + head.extra)
        if self.connections >= settings.max_connections:
            payload: dict[str, object] = {"error": "too many publishing connections"}
            with contextlib.suppress(_Answer):  # (the head is in h11's buffer already)
                if isinstance(await _next_event(connection, stream), h11.Request):
                    await _respond(connection, stream, 503, payload, _RETRY, close=True)
            return
        self.connections += 1
        try:
            await self._serve(connection, stream, peer)
        finally:
            self.connections -= 1

    async def _serve(
        self, connection: h11.Connection, stream: trio.abc.Stream, peer: object
    ) -> None:
        settings = self._settings
        while True:
            try:
                with trio.move_on_after(settings.timeout):
                    request = await _next_event(connection, stream)
            except _Answer as bad:  # not HTTP: say so, and close
                await _respond(connection, stream, bad.status, {"error": bad.reason}, [], True)
                return
            if not isinstance(request, h11.Request):
                return  # closed, idle too long, or not HTTP: nothing to answer
            try:
                with trio.move_on_after(settings.timeout) as reading:
                    status, payload = await self._answer(connection, stream, request)
                if reading.cancelled_caught:
                    raise _Answer(408, "request not complete in time", close=True)
                headers: list[tuple[str, str]] = []
                close = False
            except _Answer as answer:
                status, payload = answer.status, {"error": answer.reason}
                headers, close = answer.headers, answer.close
                logger.info(
                    "%s POST %s: HTTP %d %s", peer, request.target.decode("latin-1"),
                    status, answer.reason,
                )  # fmt: skip
            if not await _respond(connection, stream, status, payload, headers, close):
                return
            if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
                return
            connection.start_next_cycle()

    async def _answer(
        self, connection: h11.Connection, stream: trio.abc.Stream, request: h11.Request
    ) -> tuple[int, dict[str, object]]:
        self.requests += 1
        settings = self._settings
        head = _as_head(request)
        if request.method != b"POST":
            raise _Answer(
                405, "only POST on a kept-alive connection", close=True, headers=[("Allow", "POST")]
            )
        try:
            room = room_from_path(head.path, settings.max_room_name)
        except ValueError as exc:
            raise _Answer(400, str(exc), close=True) from None
        refusal = settings.access.check(head)
        if refusal is not None:
            raise _Answer(refusal.status, refusal.reason, close=True)
        grant = settings.access.grant(head, time.time())
        if isinstance(grant, HttpRefusal):
            raise _Answer(grant.status, grant.reason, close=True, headers=grant.headers)
        if not grant.can_publish_http(room):
            raise _Answer(403, "not allowed to publish in this room", close=True)
        kind = (head.header("content-type") or _TEXT).partition(";")[0].strip().lower()
        if kind not in (_TEXT, _BINARY, _NDJSON):
            raise _Answer(415, f"send {_TEXT}, {_BINARY} or {_NDJSON}", close=True)
        body = await _body(connection, stream, settings.max_message_size, head)
        messages = _messages(body, kind, settings.max_batch)
        epoch, offset = await self._publish(room, messages)
        self.published += len(messages)
        answer: dict[str, object] = {"room": room, "epoch": epoch, "offset": offset}
        if kind == _NDJSON:
            answer["count"] = len(messages)
        return 200, answer

    async def _publish(self, name: str, messages: list[str | bytes]) -> tuple[str, int]:
        if not messages:
            raise _Answer(400, "no message in the body")
        backplane = self._backplane()
        if backplane is not None:
            try:
                return await backplane.publish(name, messages)
            except BackplaneUnavailable as exc:
                raise _Answer(503, str(exc), headers=_RETRY) from None
        room = self._rooms.get(name)
        if room is None:
            if not self._rooms.has_room_for(name):
                raise _Answer(503, "too many rooms", headers=_RETRY)
            room = self._rooms.room(name)
        for message in messages:
            room.send(message)
        epoch, offset = room.epoch, room.last_offset
        self._rooms.prune(name)  # nobody there and nothing kept: no room to keep
        return epoch, offset


def _messages(body: bytes, kind: str, max_batch: int) -> list[str | bytes]:
    if kind == _BINARY:
        return [body]
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _Answer(400, "a text message must be UTF-8") from None
    if kind == _TEXT:
        return [text]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    if len(lines) > max_batch:
        raise _Answer(413, f"a batch has at most {max_batch} lines (--max-batch)")
    return [line.removesuffix("\r") for line in lines]


async def _body(
    connection: h11.Connection, stream: trio.abc.Stream, limit: int, head: RequestHead
) -> bytes:
    """The request body, at most *limit* bytes (413 past it, before reading more)."""
    declared = head.header("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _Answer(413, f"a body has at most {limit} bytes (--max-message-size)", close=True)
    body = bytearray()
    while True:
        event = await _next_event(connection, stream)
        if isinstance(event, h11.Data):
            body += event.data
            if len(body) > limit:
                raise _Answer(
                    413, f"a body has at most {limit} bytes (--max-message-size)", close=True
                )
        elif isinstance(event, h11.EndOfMessage):
            return bytes(body)
        else:
            raise _Answer(400, "the request ended before its body", close=True)


async def _next_event(connection: h11.Connection, stream: trio.abc.Stream) -> object:
    """The next h11 event, reading as needed; None if the peer closed."""
    while True:
        try:
            event = connection.next_event()
        except h11.RemoteProtocolError as exc:
            raise _Answer(exc.error_status_hint, "bad request", close=True) from None
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return None
            connection.receive_data(bytes(data))
            continue
        if isinstance(event, h11.ConnectionClosed):
            return None
        return event


async def _respond(
    connection: h11.Connection,
    stream: trio.abc.Stream,
    status: int,
    payload: dict[str, object],
    headers: list[tuple[str, str]],
    close: bool,
) -> bool:
    """Send the answer; False if the connection is done with."""
    body = json.dumps(payload).encode()
    all_headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        *headers,
    ]
    if close:
        all_headers.append(("Connection", "close"))
    try:
        if connection.our_state not in (h11.SEND_RESPONSE, h11.IDLE):  # IDLE: after bad input
            return False
        data = connection.send(h11.Response(status_code=status, headers=all_headers))
        data += connection.send(h11.Data(data=body)) or b""
        data += connection.send(h11.EndOfMessage()) or b""
        await stream.send_all(data or b"")
    except (h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
        return False
    return not close


def _head_bytes(head: RequestHead) -> bytes:
    """The head as the client sent it (names lower-cased), for h11 to parse."""
    lines = [f"{head.method} {head.target} HTTP/{head.version}"]
    lines += [f"{name}: {value}" for name, value in head.headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _as_head(request: h11.Request) -> RequestHead:
    return RequestHead(
        method=request.method.decode("ascii"),
        target=request.target.decode("latin-1"),
        headers=[(n.decode("ascii"), v.decode("latin-1")) for n, v in request.headers],
    )
