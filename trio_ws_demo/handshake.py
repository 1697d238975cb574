"""What a WebSocket upgrade must carry: RFC 6455's checks and our access policy.

Both are pure functions of a parsed :class:`~trio_ws_demo.http.RequestHead`
(no I/O), used by the front door (:mod:`trio_ws_demo.frontdoor`).
:func:`redact` hides the token wherever a request target is logged.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import urllib.parse
from dataclasses import dataclass

from .http import HttpRefusal, RequestHead

__all__ = ["AccessPolicy", "check_upgrade", "redact"]


@dataclass(frozen=True)
class AccessPolicy:
    """Who may open a WebSocket: allowed origins and a shared token."""

    allow_origins: frozenset[str] = frozenset()
    """Exact ``Origin`` values allowed; empty allows any (and none)."""
    token: str | None = None
    """When set, clients must present it as ``Authorization: Bearer`` or ``?token=``."""

    def check(self, head: RequestHead) -> HttpRefusal | None:
        origin = head.header("origin")
        if self.allow_origins and origin not in self.allow_origins and not _same_origin(head):
            return HttpRefusal(403, "origin not allowed")
        if self.token is not None and not self.token_ok(head):
            return HttpRefusal(401, "missing or wrong token", [("WWW-Authenticate", "Bearer")])
        return None

    def token_ok(self, head: RequestHead) -> bool:
        """True if *head* presents the token (as a Bearer header or ``?token=``)."""
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


def _same_origin(head: RequestHead) -> bool:
    """The request comes from a page this server served (our own chat page)."""
    origin, host = head.header("origin"), head.header("host")
    if not origin or not host:
        return False
    parts = urllib.parse.urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()


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
