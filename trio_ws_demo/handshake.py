"""The front door: read one HTTP request head, bounded, and decide what it may do.

Every connection starts here, before trio-websocket sees a byte. We read the
request head ourselves with :mod:`h11`, bounded in size (a head that is too
large gets 431) and in time (the caller's handshake timeout drops slowloris
clients), so garbage never reaches the WebSocket layer and every refusal is a
proper HTTP response with ``Connection: close``:

==========================================================  ======
what the client sent                                        answer
==========================================================  ======
not HTTP, or a malformed head                               400
a head larger than the limit                                431
an upgrade with a wrong ``Sec-WebSocket-Version``            426
an upgrade without a valid ``Sec-WebSocket-Key``             400
an ``Origin`` not on the allow-list (when one is set)        403
no valid token (when one is set)                            401
one client too many                                         503
==========================================================  ======

Accepted upgrades are handed to trio-websocket together with the raw bytes
already read (see :meth:`~trio_ws_demo.wire.FrameWire.replay`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import http
import urllib.parse
from dataclasses import dataclass, field

import h11
import trio

__all__ = [
    "DEFAULT_MAX_REQUEST_HEAD",
    "AccessPolicy",
    "HttpRefusal",
    "RequestHead",
    "check_upgrade",
    "read_request_head",
    "redact",
    "send_response",
]

DEFAULT_MAX_REQUEST_HEAD = 16 * 1024


@dataclass(frozen=True)
class RequestHead:
    """One parsed HTTP request head, plus every byte read to get it."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    raw: bytes

    @property
    def path(self) -> str:
        return urllib.parse.urlsplit(self.target).path or "/"

    @property
    def query(self) -> dict[str, list[str]]:
        return urllib.parse.parse_qs(urllib.parse.urlsplit(self.target).query)

    def header(self, name: str) -> str | None:
        """The first value of header *name* (case-insensitive), or None."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_tokens(self, name: str) -> set[str]:
        """Comma-separated tokens of every *name* header, lower-cased."""
        name = name.lower()
        return {
            token.strip().lower()
            for key, value in self.headers
            if key == name
            for token in value.split(",")
        }

    @property
    def is_websocket_upgrade(self) -> bool:
        return "websocket" in self.header_tokens("upgrade")


@dataclass(frozen=True)
class HttpRefusal:
    """A reason not to serve a request, as an HTTP status."""

    status: int
    reason: str
    """A short, loggable reason (never contains a secret)."""
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class AccessPolicy:
    """Who may open a WebSocket: allowed origins and a shared token."""

    allow_origins: frozenset[str] = frozenset()
    """Exact ``Origin`` values allowed; empty allows any (and none)."""
    token: str | None = None
    """When set, clients must present it as ``Authorization: Bearer`` or ``?token=``."""

    def check(self, head: RequestHead) -> HttpRefusal | None:
        if self.allow_origins and head.header("origin") not in self.allow_origins:
            return HttpRefusal(403, "origin not allowed")
        if self.token is not None and not self._token_ok(head):
            return HttpRefusal(401, "missing or wrong token", [("WWW-Authenticate", "Bearer")])
        return None

    def _token_ok(self, head: RequestHead) -> bool:
        assert self.token is not None
        expected = self.token.encode()
        presented: list[str] = []
        authorization = head.header("authorization") or ""
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer":
            presented.append(credentials.strip())
        presented.extend(head.query.get("token", []))
        # compare_digest on every candidate: time does not depend on the secret.
        return any(hmac.compare_digest(p.encode(), expected) for p in presented)


def check_upgrade(head: RequestHead) -> HttpRefusal | None:
    """RFC 6455 §4.2.1 checks that wsproto would otherwise fail without an answer."""
    if head.method != "GET":
        return HttpRefusal(405, "WebSocket upgrades must use GET", [("Allow", "GET")])
    if "upgrade" not in head.header_tokens("connection"):
        return HttpRefusal(400, "Connection header lacks 'upgrade'")
    if head.header("sec-websocket-version") != "13":
        return HttpRefusal(
            426, "unsupported Sec-WebSocket-Version", [("Sec-WebSocket-Version", "13")]
        )
    key = head.header("sec-websocket-key")
    try:
        valid_key = key is not None and len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        valid_key = False
    if not valid_key:
        return HttpRefusal(400, "missing or invalid Sec-WebSocket-Key")
    return None


class _HeadTooLarge(Exception):
    pass


async def read_request_head(
    stream: trio.abc.Stream, max_size: int = DEFAULT_MAX_REQUEST_HEAD
) -> RequestHead | HttpRefusal | None:
    """Read one request head from *stream*.

    Returns the head, an :class:`HttpRefusal` for a malformed or oversized
    head, or None if the peer closed first. The caller bounds the time.
    """
    parser = h11.Connection(h11.SERVER, max_incomplete_event_size=max_size)
    raw = bytearray()
    while True:
        try:
            event = parser.next_event()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            return HttpRefusal(status, "request head too large" if status == 431 else "bad request")
        if isinstance(event, h11.Request):
            return RequestHead(
                method=event.method.decode("ascii", "replace"),
                target=event.target.decode("ascii", "replace"),
                headers=[
                    (name.decode("ascii", "replace").lower(), value.decode("latin-1"))
                    for name, value in event.headers
                ],
                raw=bytes(raw),
            )
        if event is h11.NEED_DATA:
            data = await stream.receive_some(max_size + 1)
            if not data:
                return None
            raw += data
            parser.receive_data(bytes(data))
        else:  # ConnectionClosed or anything unexpected before a request
            return None


async def send_response(
    stream: trio.abc.Stream,
    status: int,
    *,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    content_type: str = "text/plain; charset=utf-8",
    head_only: bool = False,
) -> None:
    """Write one complete HTTP/1.1 response with ``Connection: close``."""
    all_headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
        ("Cache-Control", "no-store"),
        *(headers or []),
    ]
    phrase = http.HTTPStatus(status).phrase
    lines = [f"HTTP/1.1 {status} {phrase}", *(f"{name}: {value}" for name, value in all_headers)]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    await stream.send_all(head if head_only else head + body)


def redact(target: str) -> str:
    """*target* with any ``token`` query value hidden, for logs."""
    parts = urllib.parse.urlsplit(target)
    if not parts.query:
        return target
    query = [
        (name, "***" if name == "token" else value)
        for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, safe="*")))
