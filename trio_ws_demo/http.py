"""HTTP/1.1 as the front door needs it: read one request head, bounded; write one response.

Every connection starts with an HTTP request head, read here before anything
else sees a byte, bounded in size (431 past the limit) and, by the caller, in
time; it is parsed once, here, in linear time (no backtracking pattern). Every
response we write ourselves (refusals, the chat page, ``/healthz``,
``/metrics``) is complete and carries ``Connection: close``.
"""

from __future__ import annotations

import contextlib
import http
import re
import urllib.parse
from dataclasses import dataclass, field

import trio

__all__ = [
    "DEFAULT_MAX_REQUEST_HEAD",
    "HttpRefusal",
    "RequestHead",
    "format_host",
    "linger",
    "parse_request_head",
    "read_request_head",
    "send_response",
    "split_target",
]

DEFAULT_MAX_REQUEST_HEAD = 16 * 1024


@dataclass(frozen=True)
class RequestHead:
    """One parsed HTTP request head, plus every byte read to get it."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    extra: bytes = b""
    """Bytes read after the head (a client's first frames, sent in the same packet)."""
    version: str = "1.1"
    path: str = field(init=False)
    """The target's path ("/" if it has none), split once from :attr:`target`."""
    query_string: str = field(init=False)
    """The target's query, without its "?"."""

    def __post_init__(self) -> None:
        # ValueError for a target that is not one (parse_request_head answers 400).
        path, query = split_target(self.target)
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "query_string", query)

    @property
    def query(self) -> dict[str, list[str]]:
        return urllib.parse.parse_qs(self.query_string)

    def header(self, name: str) -> str | None:
        """The first value of header *name* (case-insensitive), or None."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_tokens(self, name: str, *, exact: bool = False) -> set[str]:
        """Comma-separated tokens of every *name* header, lower-cased unless *exact*
        (subprotocols are matched as the client spelled them, RFC 6455 §4.1)."""
        name = name.lower()
        return {
            token.strip() if exact else token.strip().lower()
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


# RFC 9112 §3 and RFC 9110 §5.6.2, strictly: a token method and field names,
# one space between the parts of the request line, no obsolete line folding,
# no control characters but HTAB in field values.
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# The target is visible ASCII (RFC 9112 §3.2, RFC 3986 §2): a raw non-ASCII
# byte is refused here, as h11 refuses it in the publish API's later requests.
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/1\.([01])")
# The field name and its colon, then a value checked by a single character
# class and stripped by bytes.strip(): no pattern with two ways to match the
# same spaces, so a line costs linear time however it is built (a lazy value
# followed by optional spaces backtracked quadratically: finding S2).
_FIELD_NAME = re.compile(rb"(" + _TOKEN + rb"):")
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
# RFC 9110 §7.2 / RFC 3986 §3.2.2: Host is uri-host [":" port], ASCII only: an
# IP literal in brackets, or reg-name characters (which include IPv4 and
# percent-encodings, never ':'), so each character has one place to go.
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?")
# RFC 3986 §3.3: an absolute path is "/" and pchars (unreserved, pct-encoded,
# sub-delims, ":" and "@"); "[", "]", "{", "\\" or '"' never belong in one. The
# query is left as lenient as browsers and curl are.
_PATH = re.compile(r"[A-Za-z0-9\-._~%!$&'()*+,;=:@/]*")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(rb"\r?\n")


async def read_request_head(
    stream: trio.abc.Stream, max_size: int = DEFAULT_MAX_REQUEST_HEAD
) -> RequestHead | HttpRefusal | None:
    """Read one request head from *stream*.

    Returns the head, an :class:`HttpRefusal` for a malformed or oversized
    head, or None if the peer closed first. The caller bounds the time.

    Why not h11: one request per connection needs no connection state, and a
    handshake is the cost that matters most per connection. This reader
    accepts a strict subset of HTTP/1.x heads, enough to route and check the
    request, and nothing else parses it again: the connection writes the 101.
    """
    raw = bytearray()
    searched = 0
    while True:
        if raw[:2] == b"\x16\x03":  # a TLS ClientHello: no head will ever come
            return HttpRefusal(400, "TLS on a plain ws:// port")
        end = _HEAD_END.search(raw, max(0, searched - 3))
        if end is not None and end.start() <= max_size:
            return parse_request_head(bytes(raw[: end.start()]), bytes(raw[end.end() :]))
        if end is not None or len(raw) > max_size:
            return HttpRefusal(431, "request head too large")
        searched = len(raw)
        data = await stream.receive_some(max_size + 1)
        if not data:
            return None
        raw += data


def parse_request_head(head: bytes, extra: bytes = b"") -> RequestHead | HttpRefusal:
    """Parse *head* (the request line and fields, without the blank line);
    *extra* is what was read after it."""
    lines = _LINE_END.split(head)
    request_line = _REQUEST_LINE.fullmatch(lines[0])
    if request_line is None:  # a raw byte past 0x7e is no URL character (RFC 3986 §2)
        return HttpRefusal(400, "bad request" if lines[0].isascii() else "bad request target")
    headers = []
    hosts = []
    for line in lines[1:]:
        name = _FIELD_NAME.match(line)
        if name is None:
            return HttpRefusal(400, "bad request")
        value = line[name.end() :]
        if _FIELD_VALUE.fullmatch(value) is None:
            return HttpRefusal(400, "bad request")
        value = value.strip(b" \t")
        key = name[1].decode("ascii").lower()
        if key == "host":
            if _HOST.fullmatch(value) is None:
                return HttpRefusal(400, "bad Host header")
            hosts.append(value)
        headers.append((key, value.decode("latin-1")))
    if request_line[3] == b"1" and len(hosts) != 1:
        return HttpRefusal(400, "bad request")  # RFC 9112 §3.2: exactly one Host
    try:
        return RequestHead(
            method=request_line[1].decode("ascii"),
            target=request_line[2].decode("ascii"),
            headers=headers,
            extra=extra,
            version="1." + request_line[3].decode("ascii"),
        )
    except ValueError:  # finding R11: "//[x" made urlsplit raise out of every .path
        return HttpRefusal(400, "bad request target")


def split_target(target: str) -> tuple[str, str]:
    """The path ("/" if none) and the query of a request *target*; ValueError if
    it is not one.

    Called once per head, by :class:`RequestHead`. An origin-form target (the
    usual ``/room?x``) is split at its first ``?`` and never given to urlsplit,
    which reads ``//x`` as a host ``x`` with an empty path (so ``POST //x``
    published into the room ``''``) and raises on ``//[x``. Only an
    absolute-form target (``http://host/path``) goes through urlsplit.
    """
    if target.startswith("/"):
        path, _, query = target.partition("#")[0].partition("?")
        if _PATH.fullmatch(path) is None:
            raise ValueError("a path is / and pchars (RFC 3986 §3.3)")
        if path.startswith("//"):  # an empty first segment: //x/y is not the room x/y
            raise ValueError("empty path segment in the request target")
        return path, query
    parts = urllib.parse.urlsplit(target)  # ValueError: "Invalid IPv6 URL", ...
    return parts.path or "/", parts.query


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


LINGER_SECONDS = 1.0
LINGER_BYTES = 256 * 1024


async def linger(stream: trio.abc.Stream) -> None:
    """Half-close and drain briefly (at most :data:`LINGER_BYTES` for
    :data:`LINGER_SECONDS`), so that unread request bytes do not turn our close
    into a reset that destroys the response (RFC 9112 §9.6). Used after every
    answer that closes the connection, by the front door and the publish API."""
    if not isinstance(stream, trio.abc.HalfCloseableStream):
        return
    with (
        trio.move_on_after(LINGER_SECONDS),
        contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
    ):
        await stream.send_eof()
        drained = 0
        while drained < LINGER_BYTES and (chunk := await stream.receive_some(65536)):
            drained += len(chunk)


def format_host(host: str) -> str:
    """*host* as it goes before ``:port`` in a URL or a log line (IPv6 in brackets)."""
    return f"[{host}]" if ":" in host else host
