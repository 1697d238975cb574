"""The fixed vocabulary of refusal reasons: what counters and metric labels may say.

A refusal carries two texts. Its *detail* (:attr:`HttpRefusal.reason`) may hold
request data (a path, PyJWT's words about a broken token) and goes only to the
response body and the (escaped, redacted) log line. Its :class:`Reason` is one
of the short names below, and only a :class:`Reason` ever becomes a key of
``FrontDoor.rejections`` or a ``reason`` label in ``/metrics``: a client that
sends a million different paths makes a million log lines, never a million
labels (findings R5 and T1: 2,000 refused upgrades grew ``/metrics`` from 3 KB
to 2.2 MB, for good).

The names are the fixed texts the refusals already had, so the labels that
dashboards know keep their spelling; the refusals whose text held request
data now count under a name of their own (``reserved path``, ``bad room name``,
``not an acceptable token``, ...).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .http import HttpRefusal

__all__ = ["Reason", "Refusal", "reason_for_text", "reason_of"]


class Reason(enum.StrEnum):
    """Every reason a handshake or a request on the WebSocket port is refused."""

    # The head (http.py, the front door)
    BAD_REQUEST = "bad request"
    BAD_HOST = "bad Host header"
    BAD_TARGET = "bad request target"
    TLS_ON_PLAIN = "TLS on a plain ws:// port"
    HEAD_TOO_LARGE = "request head too large"
    HANDSHAKE_TIMEOUT = "handshake timeout"
    TOO_MANY_PENDING = "too many pending heads"
    # RFC 6455 (handshake.check_upgrade)
    NOT_GET = "WebSocket upgrades must use GET"
    NOT_HTTP11 = "WebSocket upgrades need HTTP/1.1"
    HAS_BODY = "a WebSocket upgrade carries no body"
    NO_CONNECTION_UPGRADE = "Connection header lacks 'upgrade'"
    BAD_VERSION = "unsupported Sec-WebSocket-Version"
    BAD_KEY = "missing or invalid Sec-WebSocket-Key"
    BAD_EXTENSIONS = "malformed Sec-WebSocket-Extensions"
    # Rooms, names and limits
    RESERVED_PATH = "reserved path"
    BAD_ROOM_NAME = "bad room name"
    ROOM_NAME_TOO_LONG = "room name too long"
    BAD_NAME = "bad name"
    BAD_RESUME = "resume needs ?since=OFFSET&epoch=EPOCH"
    TOO_MANY_CLIENTS = "too many clients"
    TOO_MANY_ROOMS = "too many rooms"
    OVERLOADED = "server overloaded"
    """--max-memory has no room for the joiner's backfill, or is full."""
    DRAINING = "server draining"
    """A drain is under way (SIGTERM): the process is about to go."""
    STARTING = "server starting"
    """The process is still reaching Redis: it listens, but admits nobody yet."""
    # Access
    ORIGIN_NOT_ALLOWED = "origin not allowed"
    NOT_ALLOWED_TO_READ = "not allowed to read this room"
    MISSING_TOKEN = "missing or wrong token"
    TOKEN_NO_EXP = "token has no exp"
    TOKEN_BAD_EXP = "token exp is not a number"
    TOKEN_EXP_OUT_OF_RANGE = "token exp is out of range"
    TOKEN_EXPIRED = "token expired"
    TOKEN_WRONG_ALGORITHM = "token signed with a wrong algorithm"
    TOKEN_BAD_SIGNATURE = "token signature does not verify"
    TOKEN_BAD_ROOMS = 'token rooms claim must map patterns to "r", "w" or "rw"'
    TOKEN_NOT_ACCEPTABLE = "not an acceptable token"
    OTHER = "other"
    """A refusal whose text is not in this list (a new one someone forgot to add)."""


@dataclass(frozen=True)
class Refusal(HttpRefusal):
    """An :class:`HttpRefusal` whose text holds request data: it says which
    :class:`Reason` to count it under."""

    label: Reason = Reason.OTHER


_BY_TEXT = {reason.value: reason for reason in Reason}


def reason_of(refusal: HttpRefusal) -> Reason:
    """The fixed reason to count *refusal* under (never its free text)."""
    if isinstance(refusal, Refusal):
        return refusal.label
    return reason_for_text(refusal.reason)


def reason_for_text(text: str, default: Reason = Reason.OTHER) -> Reason:
    """The reason whose name is exactly *text*, else *default*."""
    return _BY_TEXT.get(text, default)
