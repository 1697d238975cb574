"""HTTP/1.1 as the front door needs it, sans-I/O: a request head in, a response out.

Every connection starts with an HTTP request head, fed to a :class:`HeadReader`
before anything else sees a byte, bounded in size (431 past the limit; the
server bounds the time); it is parsed once, here, in linear time (no
backtracking pattern), and its target is split once. Every response we write
ourselves (refusals, the chat page, ``/healthz``, ``/metrics``) is made by
:func:`response`, complete and with ``Connection: close``. The reading and
writing themselves are :mod:`trio_ws_demo.server.http_io`.
"""

from __future__ import annotations

import http
import re
import urllib.parse
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_MAX_REQUEST_HEAD",
    "HeadReader",
    "HttpRefusal",
    "RequestHead",
    "format_host",
    "parse_request_head",
    "response",
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
    raw: bytes = b""
    """The head's bytes as they came, blank line included: the publish API hands
    them to h11 as they are, rather than writing the head out again."""
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


class HeadReader:
    """A request head arriving in pieces: :meth:`feed` it what the socket gave.

    Why not h11: one request per connection needs no connection state, and a
    handshake is the cost that matters most per connection. This reader
    accepts a strict subset of HTTP/1.x heads, enough to route and check the
    request, and nothing else parses it again: the connection writes the 101.
    Each byte is searched once for the blank line, so a head dribbled a byte at
    a time costs linear time; past *max_size* it is refused (431).
    """

    __slots__ = ("_raw", "_searched", "max_size")

    def __init__(self, max_size: int = DEFAULT_MAX_REQUEST_HEAD) -> None:
        self.max_size = max_size
        self._raw = bytearray()
        self._searched = 0

    def feed(self, data: bytes | bytearray) -> RequestHead | HttpRefusal | None:
        """The head once it is whole, a refusal for a malformed or oversized one,
        or None while more is needed (read at most :attr:`wanted` bytes next)."""
        raw = self._raw
        raw += data
        if raw[:2] == b"\x16\x03":  # a TLS ClientHello: no head will ever come
            return HttpRefusal(400, "TLS on a plain ws:// port")
        end = _HEAD_END.search(raw, max(0, self._searched - 3))
        if end is not None and end.start() <= self.max_size:
            whole = bytes(raw[: end.end()])
            return parse_request_head(whole[: end.start()], bytes(raw[end.end() :]), whole)
        if end is not None or len(raw) > self.max_size:
            return HttpRefusal(431, "request head too large")
        self._searched = len(raw)
        return None

    @property
    def wanted(self) -> int:
        """How much to read next: one byte past the limit is enough to refuse."""
        return self.max_size + 1


def parse_request_head(
    head: bytes, extra: bytes = b"", raw: bytes = b""
) -> RequestHead | HttpRefusal:
    """Parse *head* (the request line and fields, without the blank line);
    *extra* is what was read after it, *raw* the head as it came."""
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
            raw=raw,
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


def response(
    status: int,
    *,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    content_type: str = "text/plain; charset=utf-8",
    head_only: bool = False,
) -> bytes:
    """One complete HTTP/1.1 response with ``Connection: close``, as bytes."""
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
    return head if head_only else head + body


def format_host(host: str) -> str:
    """*host* as it goes before ``:port`` in a URL or a log line (IPv6 in brackets)."""
    return f"[{host}]" if ":" in host else host
