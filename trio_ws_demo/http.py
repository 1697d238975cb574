"""HTTP/1.1 as the front door needs it: read one request head, bounded; write one response.

Every connection starts with an HTTP request head, read here with :mod:`h11`
before trio-websocket sees a byte, bounded in size (431 past the limit) and,
by the caller, in time. Every response we write ourselves (refusals, the chat
page, ``/healthz``, ``/metrics``) is complete and carries ``Connection: close``.
"""

from __future__ import annotations

import http
import urllib.parse
from dataclasses import dataclass, field

import h11
import trio

__all__ = [
    "DEFAULT_MAX_REQUEST_HEAD",
    "HttpRefusal",
    "RequestHead",
    "read_request_head",
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
