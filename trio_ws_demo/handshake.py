"""What a WebSocket upgrade must carry: RFC 6455's checks, and the 101.

Both are pure functions of a parsed :class:`~trio_ws_demo.http.RequestHead`
(no I/O), used by the front door (:mod:`trio_ws_demo.server.frontdoor`), which also
writes the 101 that :func:`accept_response` makes: the head is parsed once. Who
may connect is :mod:`trio_ws_demo.access`'s; which extension it gets is
:mod:`trio_ws_demo.extensions`' (:func:`agreed_extension` reads the header).
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from .extensions import Agreement, Compression, negotiate, parse_extensions
from .http import HttpRefusal, RequestHead

__all__ = ["accept_response", "agreed_extension", "check_upgrade"]


_WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _offered_extensions(head: RequestHead) -> str:
    """Every Sec-WebSocket-Extensions header, as one list (RFC 7230 §3.2.2)."""
    return ", ".join(value for key, value in head.headers if key == "sec-websocket-extensions")


def agreed_extension(head: RequestHead, mode: Compression) -> Agreement | None:
    """The permessage-deflate agreement for an upgrade that passed :func:`check_upgrade`."""
    if mode is Compression.OFF:
        return None
    return negotiate(parse_extensions(_offered_extensions(head)), mode)


def accept_response(
    head: RequestHead, subprotocol: str | None, extension: Agreement | None = None
) -> bytes:
    """The 101 answer to an upgrade that passed :func:`check_upgrade` (RFC 6455 §4.2.2)."""
    key = (head.header("sec-websocket-key") or "").strip().encode("ascii")
    accept = base64.b64encode(hashlib.sha1(key + _WEBSOCKET_GUID).digest())
    lines = [
        b"HTTP/1.1 101 Switching Protocols",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Accept: " + accept,
    ]
    if subprotocol is not None:
        lines.append(b"Sec-WebSocket-Protocol: " + subprotocol.encode("ascii"))
    if extension is not None:
        lines.append(b"Sec-WebSocket-Extensions: " + extension.response.encode("ascii"))
    return b"\r\n".join(lines) + b"\r\n\r\n"


def check_upgrade(head: RequestHead) -> HttpRefusal | None:
    """RFC 6455 §4.2.1 checks that wsproto would otherwise fail without an answer."""
    if head.method != "GET":
        return HttpRefusal(405, "WebSocket upgrades must use GET", [("Allow", "GET")])
    if head.version != "1.1":
        return HttpRefusal(400, "WebSocket upgrades need HTTP/1.1")
    if head.header("content-length") is not None or head.header("transfer-encoding") is not None:
        # What follows the head are frames: a body would be read as one.
        return HttpRefusal(400, "a WebSocket upgrade carries no body")
    if "upgrade" not in head.header_tokens("connection"):
        return HttpRefusal(400, "Connection header lacks 'upgrade'")
    if head.header("sec-websocket-version") != "13":
        return HttpRefusal(
            426, "unsupported Sec-WebSocket-Version", [("Sec-WebSocket-Version", "13")]
        )
    key = head.header("sec-websocket-key")
    try:
        valid_key = key is not None and len(base64.b64decode(key.strip(), validate=True)) == 16
    except (binascii.Error, ValueError):
        valid_key = False
    if not valid_key:
        return HttpRefusal(400, "missing or invalid Sec-WebSocket-Key")
    try:  # a declined offer is no error, but a header that does not parse is
        parse_extensions(_offered_extensions(head))
    except ValueError:
        return HttpRefusal(400, "malformed Sec-WebSocket-Extensions")
    return None
