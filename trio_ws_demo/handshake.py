"""What a WebSocket upgrade must carry: RFC 6455's checks and our access policy.

Both are pure functions of a parsed :class:`~trio_ws_demo.http.RequestHead`
(no I/O), used by the front door (:mod:`trio_ws_demo.server.frontdoor`), which also
writes the 101 that :func:`accept_response` makes: the head is parsed once.

The same-origin rule (``--allow-origin``): a browser on one of our own pages
sends ``Origin`` equal to ``Host``, but so does an attacker's page whose name
the attacker re-points at this server (DNS rebinding, finding S4). So
``Origin == Host`` is trusted only where no name is involved: an IP literal,
or ``localhost``. A server reached through a name lists that name's origin
with ``--public-url`` (or in ``--allow-origin``).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import ipaddress
import unicodedata
import urllib.parse
from dataclasses import dataclass, field

from .http import HttpRefusal, RequestHead
from .reasons import Reason, Refusal, reason_for_text
from .tokens import EVERY_RIGHT, Grant, TokenError, TokenVerifier, check_secrets

__all__ = [
    "AccessPolicy",
    "accept_response",
    "check_upgrade",
    "name_refusal",
    "origin_of",
    "presented_credentials",
]


@dataclass(frozen=True)
class AccessPolicy:
    """Who may open a WebSocket: allowed origins, and the credentials a client
    must present (the shared token, signed tokens; see :mod:`.tokens`)."""

    allow_origins: frozenset[str] = frozenset()
    """Exact ``Origin`` values allowed; empty allows any (and none)."""
    token: str | None = None
    """When set, clients must present it as ``Authorization: Bearer`` or ``?token=``."""
    public_origins: frozenset[str] = frozenset()
    """Origins of our own chat page as users reach it (``--public-url``): always allowed."""
    jwt_secret: str | None = None
    """``--jwt-key``: signed tokens (HS256) are accepted."""
    jwt_public_key: bytes | None = field(default=None, repr=False)
    """``--jwt-public-key``: signed tokens (RS256/ES256) are accepted. With
    ``jwt_secret`` too, each is verified with its own key."""

    def __post_init__(self) -> None:
        check_secrets(self.token, self.jwt_secret, self.jwt_public_key)  # ValueError

    @property
    def mode(self) -> str:
        """``open``, ``shared token`` or ``signed tokens (ALGORITHMS)``: what the
        startup line says (see :attr:`.tokens.TokenVerifier.mode`)."""
        return self.verifier.mode

    @functools.cached_property
    def verifier(self) -> TokenVerifier:
        return TokenVerifier(self.token, self.jwt_secret, self.jwt_public_key)

    def check(self, head: RequestHead) -> HttpRefusal | None:
        """The origin rule (the credential is :meth:`grant`'s)."""
        origin = head.header("origin")
        if (
            self.allow_origins
            and origin not in self.allow_origins
            and origin not in self.public_origins
            and not _own_page(head)
        ):
            return HttpRefusal(403, "origin not allowed")
        return None

    def grant(self, head: RequestHead, now: float) -> Grant | HttpRefusal:
        """What the credential in *head* allows, or a 401 that says why. Without
        credentials required, every right, under ``?name=`` if given."""
        verifier = self.verifier
        name = None
        if "name=" in head.target:  # (most handshakes carry no query to parse)
            names = head.query.get("name", [])
            name = names[0][:64] if names and names[0].strip() else None
            refusal = name_refusal(name, "?name=")
            if refusal is not None:
                return refusal
        if not verifier.required:
            return EVERY_RIGHT if name is None else Grant(name=name, everything=True)
        try:
            grant = verifier.grant(presented_credentials(head), now, name)
        except TokenError as exc:
            why = str(exc)
            # PyJWT's words are detail (body and log); the count is by a fixed name.
            label = reason_for_text(why, Reason.TOKEN_NOT_ACCEPTABLE)
            return Refusal(401, why, [("WWW-Authenticate", "Bearer")], label=label)
        return name_refusal(grant.name, "the token's sub") or grant

    def token_ok(self, head: RequestHead) -> bool:
        """True if *head* presents the shared token (as a Bearer header or ``?token=``)."""
        assert self.token is not None
        expected = self.token.encode()
        # compare_digest on every candidate: time does not depend on the secret.
        return any(hmac.compare_digest(p.encode(), expected) for p in presented_credentials(head))


def presented_credentials(head: RequestHead) -> list[str]:
    """Every credential *head* presents: ``Authorization: Bearer``, then ``?token=``."""
    presented: list[str] = []
    authorization = head.header("authorization") or ""
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer":
        presented.append(credentials.strip())
    presented.extend(head.query.get("token", []))
    return presented


def _own_page(head: RequestHead) -> bool:
    """The request comes from a page this server served at an address no DNS
    name stands for (so no rebinding): Origin equals Host, an IP or localhost."""
    origin, host = head.header("origin"), head.header("host")
    if not origin or not host:
        return False
    try:
        parts = urllib.parse.urlsplit(origin)
        name = (parts.hostname or "").lower()
    except ValueError:  # "http://[x": not a URL, so not one of our pages (R11)
        return False
    if parts.scheme not in ("http", "https") or parts.netloc.lower() != host.lower():
        return False
    if name == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def origin_of(url: str) -> str:
    """The ``Origin`` a browser sends from a page at *url* (``--public-url``);
    ValueError if *url* is not an http(s) URL."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http:// or https:// URL: {url!r}")
    port = parts.port
    default = 80 if parts.scheme == "http" else 443
    netloc = parts.hostname if port in (None, default) else f"{parts.hostname}:{port}"
    if ":" in (parts.hostname or "") and not netloc.startswith("["):
        netloc = f"[{parts.hostname}]" + ("" if port in (None, default) else f":{port}")
    return f"{parts.scheme}://{netloc}"


_WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_response(head: RequestHead, subprotocol: str | None) -> bytes:
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
    return None


# A name shown to others (presence, /rooms/R) must show what it is: no C0/C1
# controls (Cc), no format characters (Cf: bidi overrides and isolates, which
# make "alice\u202egnp.exe" read "alicexe.png", invisible tags), no line or
# paragraph separators (Zl, Zp). ZWJ and ZWNJ are Cf but are how emoji
# sequences and some scripts are written, so they stay.
_NAME_REFUSED = frozenset({"Cc", "Cf", "Zl", "Zp"})
_NAME_JOINERS = frozenset({"\u200c", "\u200d"})


def name_refusal(name: str | None, source: str) -> HttpRefusal | None:
    """400 if *name* (from *source*: ``?name=`` or the token's ``sub``) holds a
    character that could drive a terminal or disguise the name; None if it is
    fine. Refused, not cleaned: a silent edit would show another name than the
    one the client chose, and a client with a bad name should hear about it."""
    if name is None:
        return None
    for char in name:
        if unicodedata.category(char) in _NAME_REFUSED and char not in _NAME_JOINERS:
            return Refusal(
                400,
                f"{source} holds U+{ord(char):04X}: a name may not contain control, "
                "format (bidi) or line-separator characters",
                label=Reason.BAD_NAME,
            )
    return None
