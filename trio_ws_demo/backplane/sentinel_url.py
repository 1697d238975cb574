"""A ``redis+sentinel://`` URL, parsed: which sentinels to ask for which master.

``redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/SERVICE[/DB]``

Every ``HOST:PORT`` is a sentinel (26379 when the port is left out; an IPv6
address in brackets); ``SERVICE`` is the name the sentinels monitor the master
under; ``DB`` is the database number (0 by default). The user and password are
the master's (and the replicas'): the sentinels are asked without them.

Pure: no I/O. A URL that does not parse raises
:class:`~trio_ws_demo.errors.BackplaneUnavailable` with a one-line reason
(the URL shown with its password hidden).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import BackplaneUnavailable
from ..redact import redact_url

__all__ = [
    "SENTINEL_PORT",
    "SENTINEL_SCHEME",
    "SentinelURL",
    "is_sentinel_url",
    "parse_sentinel_url",
]

SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_PORT = 26379
_SERVICE = re.compile(r"[A-Za-z0-9._-]{1,200}")


@dataclass(frozen=True)
class SentinelURL:
    """What a ``redis+sentinel://`` URL says."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def is_sentinel_url(url: str) -> bool:
    return url[: len(SENTINEL_SCHEME) + 3].lower() == SENTINEL_SCHEME + "://"


def parse_sentinel_url(url: str) -> SentinelURL:
    """The sentinels, service, database and credentials in *url*; raises
    :class:`BackplaneUnavailable` saying what is wrong with it."""

    def bad(why: str) -> BackplaneUnavailable:
        return BackplaneUnavailable(f"invalid --redis URL {redact_url(url)!r}: {why}")

    if not is_sentinel_url(url):
        raise bad(f"not a {SENTINEL_SCHEME}:// URL")
    rest = url[len(SENTINEL_SCHEME) + 3 :]
    if any(c in rest for c in "?#") or any(ord(c) < 0x21 or ord(c) == 0x7F for c in rest):
        raise bad("no query, fragment, spaces or control characters are understood")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = urllib.parse.unquote(user) or None
        password = urllib.parse.unquote(secret) if colon else None
    if not hosts:
        raise bad(f"no sentinel: give HOST:PORT[,HOST:PORT...] (port {SENTINEL_PORT} by default)")
    sentinels = tuple(_sentinel(item, bad) for item in hosts.split(","))
    if len(set(sentinels)) != len(sentinels):
        raise bad("a sentinel is named twice")
    parts = path.split("/") if slash else []
    if parts and parts[-1] == "" and len(parts) > 1:
        parts.pop()  # a trailing slash
    if not parts or not parts[0]:
        raise bad("no service name: end the URL with /SERVICE (the sentinels' master name)")
    service = urllib.parse.unquote(parts[0])
    if not _SERVICE.fullmatch(service):
        raise bad(f"the service name {service!r} is not letters, digits, '.', '_' or '-'")
    db = 0
    if len(parts) == 2:
        if not parts[1].isascii() or not parts[1].isdigit() or len(parts[1]) > 5:
            raise bad(f"the database {parts[1]!r} is not a number")
        db = int(parts[1])
    elif len(parts) > 2:
        raise bad("the path is /SERVICE or /SERVICE/DB")
    return SentinelURL(sentinels, service, db, username, password)


def _sentinel(item: str, bad: Callable[[str], BackplaneUnavailable]) -> tuple[str, int]:
    host, port_text = item, ""
    if item.startswith("["):
        host, bracket, after = item[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise bad(f"the sentinel {item!r} is not [IPv6]:PORT")
        port_text = after[1:]
        if not after:
            port_text = str(SENTINEL_PORT)
    else:
        host, colon, port_text = item.rpartition(":")
        if not colon:
            host, port_text = item, str(SENTINEL_PORT)
    if not host or (":" in host and not item.startswith("[")):
        raise bad(f"the sentinel {item!r} is not HOST:PORT")
    if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise bad(f"the sentinel {item!r} has no port from 1 to 65535")
    return host, int(port_text)
