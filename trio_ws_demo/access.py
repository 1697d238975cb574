"""Who may connect, publish or read: origins, credentials, rights, in one admission.

:meth:`AccessPolicy.admit` is the one sequence, used by the front door (a
WebSocket, :mod:`trio_ws_demo.server.frontdoor`), the publish API
(:mod:`trio_ws_demo.server.publish`) and the web routes (``/rooms``,
``/rooms/R``, ``/metrics``: :mod:`trio_ws_demo.server.web`): the origin, then
the credential (the shared token or a signed token, made a
:class:`~trio_ws_demo.tokens.Grant`), then the right the use needs. The chat
page and ``/healthz`` ask for no admission: they show nothing a room holds.

The same-origin rule (``--allow-origin``): a browser on one of our own pages
sends ``Origin`` equal to ``Host``, but so does an attacker's page whose name
the attacker re-points at this server (DNS rebinding, finding S4). So
``Origin == Host`` is trusted only where no name is involved: an IP literal,
or ``localhost``. A server reached through a name lists that name's origin
with ``--public-url`` (or in ``--allow-origin``).

Who may read ``/metrics``: on an open server (no credential required), anyone;
otherwise a credential with every room's read right (the shared token, or a
signed token whose rooms include ``**`` with ``r``). The metrics count every
room's traffic and refusals, so a right to some rooms is not enough.

Pure functions of a parsed :class:`~trio_ws_demo.http.RequestHead`: no I/O.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import unicodedata
import urllib.parse
from dataclasses import dataclass, field

from .errors import TokenError
from .http import HttpRefusal, RequestHead
from .reasons import Reason, Refusal, reason_for_text
from .tokens import EVERY_RIGHT, Grant, TokenVerifier, check_secrets

__all__ = [
    "AccessPolicy",
    "Use",
    "name_refusal",
    "origin_of",
    "presented_credentials",
]


class Use(enum.Enum):
    """What a request asks to do, and so which right :meth:`AccessPolicy.admit` checks."""

    CONNECT = "connect"
    """A WebSocket in the room: its read right (writes are checked per message)."""
    PUBLISH = "publish"
    """``POST /<room>``: the right to publish over HTTP in the room."""
    ROOM = "room"
    """``/rooms/R``: the room's members, so its read right."""
    ROOMS = "rooms"
    """``/rooms``: any admitted credential; the page lists only the rooms it may read."""
    METRICS = "metrics"
    """``/metrics``: every room's read right (see the module's docstring)."""


#: The web routes' reads: GETs a browser sends an ``Origin`` with only across origins.
_READS = frozenset({Use.ROOM, Use.ROOMS, Use.METRICS})


def _right_refusal(grant: Grant, room: str | None, use: Use) -> HttpRefusal | None:
    if use is Use.METRICS:
        return (
            None
            if grant.can_read_everything
            else HttpRefusal(403, "not allowed to read every room")
        )
    if use is Use.ROOMS:
        return None
    assert room is not None, use
    if use is Use.PUBLISH:
        if grant.can_publish_http(room):
            return None
        return HttpRefusal(403, "not allowed to publish in this room")
    return None if grant.can_read(room) else HttpRefusal(403, "not allowed to read this room")


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

    def reload_keys(self, jwt_secret: str | None, jwt_public_key: bytes | None) -> None:
        """Take new JWT keys (SIGHUP), in place, so that every holder of this
        policy verifies the next handshake with them: the one change a frozen
        policy allows. ValueError (and nothing changed) for keys it refuses."""
        check_secrets(self.token, jwt_secret, jwt_public_key)
        verifier = TokenVerifier(self.token, jwt_secret, jwt_public_key)
        object.__setattr__(self, "jwt_secret", jwt_secret)
        object.__setattr__(self, "jwt_public_key", jwt_public_key)
        self.__dict__["verifier"] = verifier  # the cached property's value

    def admit(
        self, head: RequestHead, room: str | None, now: float, use: Use = Use.CONNECT
    ) -> Grant | HttpRefusal:
        """The one admission: what *head* may do in *room* (None for the routes
        that name no room) for *use*, or the refusal that says why.

        Always in this order, for the front door, the publish API and the web
        routes alike: the origin (403), the credential (401 that says why), the
        right that *use* needs (403). What is asked (the method, RFC 6455, the
        room's name) is the caller's and comes before: a malformed request is
        400 (or 404) whoever sends it."""
        refusal = self._origin_refusal(head, absent_ok=use in _READS)
        if refusal is not None:
            return refusal
        grant = self._grant(head, now)
        if isinstance(grant, HttpRefusal):
            return grant
        return _right_refusal(grant, room, use) or grant

    def _origin_refusal(self, head: RequestHead, *, absent_ok: bool) -> HttpRefusal | None:
        """The origin rule: with ``allow_origins`` set, an ``Origin`` that is not
        listed, not a public origin and not our own page is refused. Without an
        ``Origin`` at all, a WebSocket or a publish is refused too (no browser
        page is known to have sent it), but a web read (*absent_ok*) is not:
        scrapers and ``curl`` send none, and a browser sends one on every
        cross-origin request, which is what the rule is for."""
        origin = head.header("origin")
        if origin is None and absent_ok:
            return None
        if (
            self.allow_origins
            and origin not in self.allow_origins
            and origin not in self.public_origins
            and not _own_page(head)
        ):
            return HttpRefusal(403, "origin not allowed")
        return None

    def _grant(self, head: RequestHead, now: float) -> Grant | HttpRefusal:
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
