"""Negotiating permessage-deflate (RFC 7692): the client's offers in, our answer out.

Pure functions of the ``Sec-WebSocket-Extensions`` header (no I/O, no zlib).
:func:`parse_extensions` reads the header's grammar (RFC 6455 §9.1) and
raises ``ValueError`` for a header that does not follow it: the front door
answers that with 400, as for any malformed upgrade header. :func:`negotiate`
takes the first permessage-deflate offer we can accept and *declines* the
others, as §7.1 requires (unknown or repeated parameters, bad values): a
declined offer is no error, the connection simply goes on uncompressed.

What we answer, and why:

* ``client_no_context_takeover``, always (§7.1.1.2 lets a server ask for it
  even when the offer lacks it): each message from a client is compressed on
  its own, so the server inflates it with a decompressor made for that
  message and dropped after it. Between messages a connection holds no
  compression memory at all.
* ``server_no_context_takeover`` when the client asked for it, and always in
  ``stateless`` mode (every frame we send is compressed on its own anyway, so
  the client may drop its inflater between messages too). In ``room`` mode we
  leave it out unless asked: a client with context takeover can read the
  room's frames, which refer back to the room's earlier messages.
* ``server_max_window_bits=N`` when the client asked for it (we must then
  refer back at most 2**N bytes: such a client gets frames compressed on
  their own, and only messages of at most 2**N bytes compressed).
* no ``client_max_window_bits``: without context takeover the window only
  matters inside one message, and the inflater handles every size.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

__all__ = ["EXTENSION", "Agreement", "Compression", "negotiate", "parse_extensions"]

#: The extension's registered name.
EXTENSION = "permessage-deflate"

#: The window a peer assumes when the other side says nothing (RFC 7692 §7.1.2).
DEFAULT_WINDOW_BITS = 15


class Compression(enum.Enum):
    """How the server compresses what it sends (``--compression``)."""

    OFF = "off"
    """No extension is negotiated: every frame crosses the network as it is."""
    STATELESS = "stateless"
    """Each broadcast frame is compressed once, on its own, and shared."""
    ROOM = "room"
    """One compressor per room with context takeover; clients not in step get
    the stateless copy (see :mod:`trio_ws_demo.deflate`)."""


@dataclass(frozen=True, slots=True)
class Agreement:
    """What one connection agreed to: the header we answer, and what it means
    for the frames we send it."""

    response: str
    """The value of our ``Sec-WebSocket-Extensions`` header."""
    window_bits: int = DEFAULT_WINDOW_BITS
    """The client's inflate window (its ``server_max_window_bits``)."""
    takeover: bool = True
    """The client keeps its inflate context between messages (we did not agree
    ``server_no_context_takeover``): it can read a room's compressed stream."""


# RFC 7230 §3.2.6: a token, and a quoted-string (whose content must be a token
# here, RFC 6455 §9.1). Parameters and extensions are separated by ";" and ",".
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_PIECE = re.compile(rf"[ \t]*(?:({_TOKEN})|({_QUOTED})|(.))[ \t]*", re.DOTALL)

Params = list[tuple[str, str | None]]


def parse_extensions(value: str) -> list[tuple[str, Params]]:
    """The extensions a header value offers, in order, each with its parameters
    (name, value or None); ``ValueError`` if the value breaks RFC 6455's grammar."""
    pieces: list[tuple[str, str]] = []  # ("t", token) or ("s", separator)
    for match in _PIECE.finditer(value):
        token, quoted, other = match.groups()
        if token is not None:
            pieces.append(("t", token))
        elif quoted is not None:
            unquoted = re.sub(r"\\(.)", r"\1", quoted[1:-1])
            if not re.fullmatch(_TOKEN, unquoted):
                raise ValueError("a quoted extension parameter value must be a token")
            pieces.append(("q", unquoted))
        elif other in (";", ",", "="):
            pieces.append(("s", other))
        elif other is not None:
            raise ValueError(f"unexpected character {other!r} in Sec-WebSocket-Extensions")
    offers: list[tuple[str, Params]] = []
    index = 0

    def take(kind: str) -> str | None:
        nonlocal index
        if index < len(pieces) and pieces[index][0] in kind:
            index += 1
            return pieces[index - 1][1]
        return None

    while index < len(pieces):
        if pieces[index] == ("s", ","):  # empty list elements are allowed (RFC 7230 §7)
            index += 1
            continue
        name = take("t")
        if name is None:
            raise ValueError("an extension offer must start with its name")
        params: Params = []
        while index < len(pieces) and pieces[index] == ("s", ";"):
            index += 1
            param = take("t")
            if param is None:
                raise ValueError("an extension parameter needs a name")
            argument = None
            if index < len(pieces) and pieces[index] == ("s", "="):
                index += 1
                argument = take("tq")
                if argument is None:
                    raise ValueError("an extension parameter's value is missing")
            params.append((param.lower(), argument))
        if index < len(pieces) and pieces[index] != ("s", ","):
            raise ValueError("extension offers must be separated by ','")
        offers.append((name.lower(), params))
    return offers


def _window_bits(value: str | None) -> int | None:
    """A window size parameter's value: 8..15, digits only, no leading zero."""
    if value is None or not re.fullmatch(r"[1-9][0-9]?", value):
        return None
    bits = int(value)
    return bits if 8 <= bits <= 15 else None


def _accept(params: Params, mode: Compression) -> Agreement | None:
    """Our answer to one permessage-deflate offer, or None to decline it (§7.1)."""
    seen: set[str] = set()
    server_no_takeover = mode is Compression.STATELESS
    window: int | None = None
    for name, value in params:
        if name in seen:
            return None  # "multiple extension parameters with the same name"
        seen.add(name)
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                return None
            if name == "server_no_context_takeover":
                server_no_takeover = True
        elif name == "server_max_window_bits":
            window = _window_bits(value)
            if window is None:
                return None
        elif name == "client_max_window_bits":
            if value is not None and _window_bits(value) is None:
                return None
        else:
            return None  # "any extension parameter not defined for the extension"
    answer = [EXTENSION, "client_no_context_takeover"]
    if server_no_takeover:
        answer.append("server_no_context_takeover")
    if window is not None:
        answer.append(f"server_max_window_bits={window}")
    return Agreement(
        "; ".join(answer),
        window_bits=window if window is not None else DEFAULT_WINDOW_BITS,
        takeover=not server_no_takeover,
    )


def negotiate(offers: list[tuple[str, Params]], mode: Compression) -> Agreement | None:
    """The first permessage-deflate offer we accept, or None (nothing to compress:
    ``off``, no offer, or every offer declined)."""
    if mode is Compression.OFF:
        return None
    for name, params in offers:
        if name == EXTENSION:
            agreement = _accept(params, mode)
            if agreement is not None:
                return agreement
    return None
