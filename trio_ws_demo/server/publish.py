"""The HTTP publish API: ``POST /<room>`` on the WebSocket port, for backends.

A web application that wants to tell a room's browsers "order 17 shipped"
should not have to speak WebSocket. It POSTs the message; every client of the
room gets it exactly as if a WebSocket client had sent it (history, offsets,
v1 envelopes; with ``--redis``, on every process).

- ``text/plain`` (or no type): one text message, which must be UTF-8;
  ``application/json``: one text message, the body as sent, which must be one
  UTF-8 JSON value (400 otherwise; ``NaN`` and ``Infinity`` are not JSON);
  ``application/x-www-form-urlencoded`` (what ``curl -d`` sends): one text
  message, the body's text as sent (not decoded: ``a=1&b=2`` is the message);
  ``application/octet-stream``: one binary message;
  ``application/x-ndjson``: one text message per line, in order (a batch);
  empty lines are skipped (no message, not counted against ``--max-batch``).
- ``200 {"room", "epoch", "offset"}``: the offset of the last message; a batch
  also has ``"count"``. Every error is ``{"error": "..."}`` (JSON), and every
  status line has its reason phrase (``HTTP/1.1 400 Bad Request``).
- 401 no or bad credential, 403 no right to publish there (a signed token
  needs ``publish: true`` and the write right), 400 a bad room name or body,
  413 a body over ``--max-message-size`` (each chunk of a chunked body after
  the first counts :data:`~trio_ws_demo.protocol.FRAME_COST` bytes more, as a
  WebSocket fragment does) or a batch over ``--max-batch`` lines, 408 a
  request not complete within ``--handshake-timeout``, 503 Redis unavailable
  or refusing (nothing was delivered, unless the answer was lost after Redis
  took it: a retry may then deliver twice). ``Content-Length`` together with
  ``Transfer-Encoding`` gets 400 (RFC 9112 §6.1: a smuggling vector).

HTTP/1.1 keep-alive through h11, so one connection carries many requests. The
front door has read the first head already (to route it): its bytes go to h11
as they came (h11 frames the body and keeps the connection's state), and the
first request is answered from the front door's parse; each later one is
h11's parse, made into a head once. A connection is bounded
as a WebSocket is (issue 25, findings R6, R7, R13, R16):

- Between requests, the next head must be complete within
  ``--handshake-timeout``, as the first one was; otherwise the connection is
  closed with no answer (nothing was asked). Idle or dribbled, it is the same.
- Every answer must be written within ``--close-timeout`` (the bound on
  flushing to a peer everywhere else): a client that pipelines and never reads
  is dropped, instead of holding its slot and fd for ever.
- An answer that closes the connection is followed by
  :func:`~trio_ws_demo.http.linger`, so that unread request bytes do not turn
  the close into a reset that destroys the answer.
- At shutdown (:meth:`PublishApi.close`) a connection between requests ends
  at once, and one in a request ends after its answer.
- With no credential configured (no ``--token``, no ``--jwt-key`` or
  ``--jwt-public-key``), anyone may publish, so each connection is held to
  ``--max-message-rate`` (``--message-burst`` at once), as a WebSocket client
  is. Over it the server reads less rather than refuse: it stops reading the
  connection until the bucket refills, TCP slows the sender, nothing is lost.
  With a credential the publisher is trusted, and not limited.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from http import HTTPStatus

import h11
import trio

from ..access import AccessPolicy, Use
from ..broker import Broker
from ..budget import MemoryBudget
from ..envelopes import MAX_PUBLISH_ID
from ..errors import BackplaneUnavailable
from ..forwarded import TrustedProxies
from ..http import HttpRefusal, RequestHead
from ..protocol import FRAME_COST
from ..redact import redact
from ..rooms import room_from_path
from .access_log import ACCESS_LOG_OFF, AccessLog
from .http_io import linger
from .peer import Peer

__all__ = ["PublishApi", "PublishSettings"]

logger = logging.getLogger("trio_ws_demo.server")

_NDJSON = "application/x-ndjson"
_BINARY = "application/octet-stream"
_TEXT = "text/plain"
_JSON = "application/json"
_FORM = "application/x-www-form-urlencoded"
_KINDS = (_TEXT, _JSON, _FORM, _BINARY, _NDJSON)
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
    write_timeout: float = 5.0
    """Seconds one answer may take to write (``--close-timeout``); past it the
    connection is dropped (a client that does not read, finding R6)."""
    max_message_rate: float = 0.0
    """Messages per second one connection may publish when no credential is
    configured (``--max-message-rate``); 0: no limit."""
    message_burst: int = 1
    """Messages one connection may publish at once (``--message-burst``)."""
    memory: MemoryBudget | None = None
    """The process's memory budget (``--max-memory``): a body it has no room for
    gets 503, as a WebSocket message gets 1013."""
    trusted_proxies: TrustedProxies = field(default_factory=TrustedProxies)
    """Whose ``X-Forwarded-For`` names each request's client (``--trusted-proxy``)."""
    access_log: AccessLog = ACCESS_LOG_OFF
    """One line per request answered (``--access-log``)."""


class _Bucket:
    """A connection's token bucket, as :meth:`Connection._refuse
    <trio_ws_demo.server.connection.Connection._refuse>` keeps one (*burst* messages at
    once, *rate* per second on average), except that over the rate the caller
    waits instead of refusing: a batch may take the bucket into debt, and
    :meth:`take` says how long until it holds one message again."""

    __slots__ = ("_at", "_burst", "_level", "_rate")

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(max(burst, 1))
        self._level = self._burst  # full at the start, as for a WebSocket
        self._at = trio.current_time()

    def take(self, count: int) -> float:
        """Spend *count* messages; the seconds to wait before reading more."""
        now = trio.current_time()
        self._level = min(self._burst, self._level + (now - self._at) * self._rate) - count
        self._at = now
        return (1 - self._level) / self._rate if self._level < 1 else 0.0


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
        broker: Broker,
    ) -> None:
        self._settings = settings
        self._broker = broker
        """Where the messages go: it answers with the epoch and offset of the last."""
        self.published = 0
        """Messages published over HTTP (all connections)."""
        self.requests = 0
        self.answers: collections.Counter[int] = collections.Counter()
        """Requests answered, by status (``/metrics``): counted when the answer
        is decided, whether or not the client stayed to read it."""
        self.connections = 0
        """Publishing connections open now (kept alive between requests)."""
        self.throttled = 0
        """Times a connection was over the rate and waited for its bucket to refill."""
        access = settings.access
        credential = access.token or access.jwt_secret or access.jwt_public_key
        self._rate = 0.0 if credential else settings.max_message_rate
        """The per-connection rate: only an open server (no credential) limits
        publishers; with a credential, whoever publishes was let in by it."""
        self._stopping = False
        self._between: set[trio.CancelScope] = set()
        """One scope per connection waiting between requests: shutdown cancels them."""

    def close(self) -> None:
        """Shutdown: connections between requests end now, and those in a
        request after its answer (which says ``Connection: close``), finding R13."""
        self._stopping = True
        for scope in self._between:
            scope.cancel()

    async def serve(self, stream: trio.abc.Stream, head: RequestHead, peer: Peer) -> None:
        """Answer the request in *head* and what follows on the connection."""
        settings = self._settings
        connection = h11.Connection(h11.SERVER, max_incomplete_event_size=settings.max_request_head)
        # h11 frames the body and tracks keep-alive from the bytes themselves;
        # the head it reads is the one the front door parsed, never written out
        # again, and the first request is answered from that parse (once).
        connection.receive_data((head.raw or _head_bytes(head)) + head.extra)
        if self.connections >= settings.max_connections:
            payload: dict[str, object] = {"error": "too many publishing connections"}
            with contextlib.suppress(_Answer):  # (the head is in h11's buffer already)
                if isinstance(await _next_event(connection, stream), h11.Request):
                    self.answers[503] += 1
                    timeout = settings.write_timeout
                    sent = await _respond(connection, stream, 503, payload, _RETRY, True, timeout)
                    settings.access_log.record(peer, head.method, head.target, 503, sent)
                    if sent:
                        await linger(stream)
            return
        self.connections += 1
        try:
            await self._serve(connection, stream, peer, head)
        finally:
            self.connections -= 1

    async def _serve(
        self,
        connection: h11.Connection,
        stream: trio.abc.Stream,
        peer: Peer,
        first: RequestHead | None,
    ) -> None:
        settings = self._settings
        bucket = _Bucket(self._rate, settings.message_burst) if self._rate else None
        began = peer.arrived  # the first request's time runs from the connection's arrival
        delay = 0.0
        between = False  # the first head is in h11's buffer: it is a request already
        while True:
            try:
                request = await self._next_request(connection, stream, delay, between)
            except _Answer as bad:  # not HTTP: say so, and close
                self.answers[bad.status] += 1
                payload: dict[str, object] = {"error": bad.reason}
                timeout = settings.write_timeout
                sent = await _respond(connection, stream, bad.status, payload, [], True, timeout)
                settings.access_log.record(peer, None, None, bad.status, sent, began)
                if sent:
                    await linger(stream)
                return
            if request is None:
                return  # closed, no request in time, or stopping: nothing to answer
            client = peer
            if first is None:  # a later request: its own head, its own client
                client = peer.behind(settings.trusted_proxies, _forwarded_for(request))
                began = trio.current_time()
            between = True
            published = self.published
            try:
                with trio.move_on_after(settings.timeout) as reading:
                    status, payload = await self._answer(connection, stream, request, first)
                if reading.cancelled_caught:
                    raise _Answer(408, "request not complete in time", close=True)
                headers: list[tuple[str, str]] = []
                close = False
            except _Answer as answer:
                status, payload = answer.status, {"error": answer.reason}
                headers, close = answer.headers, answer.close
                target = redact(request.target.decode("latin-1"))  # finding R4: no ?token=
                logger.info(
                    "%s POST %s: HTTP %d %s", client, target, status, answer.reason,
                    extra={"event": "publish", "peer": str(client), "path": target,
                           "status": status, "reason": answer.reason},
                )  # fmt: skip
            self.answers[status] += 1
            first = None  # a later request is h11's parse, made into a head once
            close = close or self._stopping
            sent = await _respond(
                connection, stream, status, payload, headers, close, settings.write_timeout
            )
            method, target = request.method.decode("ascii"), request.target.decode("latin-1")
            settings.access_log.record(client, method, target, status, sent, began)
            if not sent:
                return  # lost, or not written in time
            if (
                close
                or connection.our_state is not h11.DONE
                or connection.their_state is not h11.DONE
            ):
                await linger(stream)  # unread bytes must not reset the answer away (R16)
                return
            connection.start_next_cycle()
            count = self.published - published
            delay = bucket.take(count) if bucket is not None and count else 0.0
            if delay:
                self.throttled += 1

    async def _next_request(
        self, connection: h11.Connection, stream: trio.abc.Stream, delay: float, between: bool
    ) -> h11.Request | None:
        """The next request's head, after *delay* seconds of reading nothing (over
        the rate); None if the peer closed, sent no complete head within
        ``timeout`` (finding R7: the old loop answered the previous request
        again), or, *between* requests, the server is stopping."""
        with trio.CancelScope() as waiting:
            if between:
                self._between.add(waiting)
                if self._stopping:
                    waiting.cancel()
            try:
                if delay:
                    await trio.sleep(delay)
                with trio.move_on_after(self._settings.timeout):
                    event = await _next_event(connection, stream)
                    if isinstance(event, h11.Request):
                        return event
            finally:
                self._between.discard(waiting)
        return None

    async def _answer(
        self,
        connection: h11.Connection,
        stream: trio.abc.Stream,
        request: h11.Request,
        first: RequestHead | None,
    ) -> tuple[int, dict[str, object]]:
        self.requests += 1
        settings = self._settings
        head = first if first is not None else _as_head(request)
        if head.header("transfer-encoding") is not None and head.header("content-length"):
            # RFC 9112 §6.1: the two framings disagree about where the next
            # request starts (request smuggling); refuse, and close.
            raise _Answer(400, "Content-Length together with Transfer-Encoding", close=True)
        if request.method != b"POST":
            raise _Answer(
                405, "only POST on a kept-alive connection", close=True, headers=[("Allow", "POST")]
            )
        try:
            room = room_from_path(head.path, settings.max_room_name)
        except ValueError as exc:
            raise _Answer(400, str(exc), close=True) from None
        grant = settings.access.admit(head, room, time.time(), Use.PUBLISH)
        if isinstance(grant, HttpRefusal):
            raise _Answer(grant.status, grant.reason, close=True, headers=grant.headers)
        key = _idempotency_key(head)
        kind = (head.header("content-type") or _TEXT).partition(";")[0].strip().lower()
        if kind not in _KINDS:
            raise _Answer(415, f"send {', '.join(_KINDS[:-1])} or {_KINDS[-1]}", close=True)
        memory = settings.memory
        body = await _body(connection, stream, settings.max_message_size, head, memory)
        try:
            messages = _messages(body, kind, settings.max_batch)
            epoch, offset = await self._publish(room, messages, grant.publisher, key)
        finally:
            if memory is not None:
                memory.release(len(body))
        self.published += len(messages)
        answer: dict[str, object] = {"room": room, "epoch": epoch, "offset": offset}
        if kind == _NDJSON:
            answer["count"] = len(messages)
        return 200, answer

    async def _publish(
        self, name: str, messages: list[str | bytes], author: str, key: str | None
    ) -> tuple[str, int]:
        if not messages:
            raise _Answer(400, "no message in the body")
        try:
            return await self._broker.publish(name, messages, author, key)
        except BackplaneUnavailable as exc:  # Redis, or too many rooms here
            raise _Answer(503, str(exc), headers=_RETRY) from None


def _idempotency_key(head: RequestHead) -> str | None:
    """The request's ``Idempotency-Key``: the same key in the same room within
    ``--idempotency-window`` publishes once, and answers the first time's place."""
    key = head.header("idempotency-key")
    if key is None:
        return None
    if not 0 < len(key) <= MAX_PUBLISH_ID or not all("!" <= c <= "~" for c in key):
        raise _Answer(
            400, f"Idempotency-Key: 1 to {MAX_PUBLISH_ID} visible ASCII characters", close=True
        )
    return key


def _messages(body: bytes, kind: str, max_batch: int) -> list[str | bytes]:
    if kind == _BINARY:
        return [body]
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _Answer(400, "a text message must be UTF-8") from None
    if kind == _JSON:
        try:  # one JSON value (RFC 8259: no NaN or Infinity), published as sent
            json.loads(text, parse_constant=_no_constant)
        except ValueError as exc:
            raise _Answer(400, f"the body is not one JSON value: {exc}") from None
    if kind != _NDJSON:
        return [text]  # text/plain, JSON, and a form as curl -d sent it
    # One message per line; an empty line (or a blank "\r") is no message.
    lines: list[str | bytes] = [
        line for line in (raw.removesuffix("\r") for raw in text.split("\n")) if line
    ]
    if len(lines) > max_batch:
        raise _Answer(413, f"a batch has at most {max_batch} lines (--max-batch)")
    return lines


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


async def _body(
    connection: h11.Connection,
    stream: trio.abc.Stream,
    limit: int,
    head: RequestHead,
    memory: MemoryBudget | None,
) -> bytes:
    """The request body, at most *limit* bytes (413 past it, before reading more).

    While it is read and until the caller releases it, the body holds its bytes
    of the memory budget; one that does not fit gets 503.

    Each chunk of a chunked body after the first costs ``FRAME_COST`` bytes
    more, as a WebSocket fragment does: h11 makes an event per chunk, so a
    1 MiB body in 1-byte chunks cost seconds of CPU, and now stops at 16,384
    chunks with 413.
    """
    declared = head.header("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _Answer(413, f"a body has at most {limit} bytes (--max-message-size)", close=True)
    body = bytearray()
    cost = chunks = 0
    try:
        while True:
            event = await _next_event(connection, stream)
            if isinstance(event, h11.Data):
                if memory is not None and not memory.take(len(event.data)):
                    raise _Answer(503, "server overloaded", close=True, headers=_RETRY)
                body += event.data
                cost += len(event.data)
                if event.chunk_start:  # a new chunk (only in a chunked body); the first is free
                    cost += FRAME_COST if chunks else 0
                    chunks += 1
                if cost > limit:
                    raise _Answer(
                        413, f"a body has at most {limit} bytes (--max-message-size)", close=True
                    )
            elif isinstance(event, h11.EndOfMessage):
                return bytes(body)
            else:
                raise _Answer(400, "the request ended before its body", close=True)
    except BaseException:
        if memory is not None:
            memory.release(len(body))
        raise


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
    timeout: float,
) -> int:
    """Send the answer within *timeout* seconds: the bytes written, 0 if it could not be."""
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
            return 0
        phrase = HTTPStatus(status).phrase.encode()  # "200 OK", not "200 "
        response = h11.Response(status_code=status, headers=all_headers, reason=phrase)
        data = connection.send(response)
        data += connection.send(h11.Data(data=body)) or b""
        data += connection.send(h11.EndOfMessage()) or b""
        with trio.move_on_after(timeout) as writing:
            await stream.send_all(data or b"")
    except (h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
        return 0
    return 0 if writing.cancelled_caught else len(data)


def _forwarded_for(request: h11.Request) -> list[str]:
    """Every ``X-Forwarded-For`` line of *request*, in order (h11 lower-cases names)."""
    return [v.decode("latin-1") for name, v in request.headers if name == b"x-forwarded-for"]


def _head_bytes(head: RequestHead) -> bytes:
    """The head as the client sent it (names lower-cased), for h11 to parse."""
    lines = [f"{head.method} {head.target} HTTP/{head.version}"]
    lines += [f"{name}: {value}" for name, value in head.headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _as_head(request: h11.Request) -> RequestHead:
    """*request* as a head; 400 for a target that is not one (RequestHead splits it)."""
    try:
        return RequestHead(
            method=request.method.decode("ascii"),
            target=request.target.decode("latin-1"),
            headers=[(n.decode("ascii"), v.decode("latin-1")) for n, v in request.headers],
        )
    except ValueError:
        raise _Answer(400, "bad request target", close=True) from None
