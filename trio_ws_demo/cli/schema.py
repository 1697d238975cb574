"""Every ``serve`` setting, declared once.

One :class:`Option` per setting holds its flag, type, default, help, metavar,
choices, whether it repeats and whether it is a secret. Everything else is
derived from that entry, so nothing can disagree with it:

* the argparse flag (:func:`add_flags`);
* the environment variable: ``--max-queue-bytes`` reads
  ``$TRIO_WS_DEMO_MAX_QUEUE_BYTES`` (:attr:`Option.env`);
* the ``--config`` file key: the flag without its dashes, ``max-queue-bytes``
  (:attr:`Option.key`), and the TOML type its value must have;
* the reference table in ``docs/configuration.md`` (:mod:`.reference`).

Adding a setting is one entry in :data:`OPTIONS` (and the line in ``serve.run``
that hands its value to the server). Pure declarations: no I/O.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..extensions import Compression
from ..hub import DEFAULT_MAX_QUEUE_BYTES, DEFAULT_MAX_QUEUE_MESSAGES, SlowClientPolicy
from ..redact import redact_url
from ..server import DEFAULT_HOST, DEFAULT_PORT, ServerOptions
from .flags import (
    head_size,
    non_negative_float,
    non_negative_float_rate,
    non_negative_int,
    port,
    positive_float,
    positive_int,
    trusted_proxy,
)

__all__ = [
    "ENV_PREFIX",
    "GROUPS",
    "OPTIONS",
    "Option",
    "add_flags",
    "by_key",
    "given_on_command_line",
]

ENV_PREFIX = "TRIO_WS_DEMO_"
GIVEN = "_given_on_command_line"
"""The namespace attribute where the flag actions note which settings were typed."""

GROUPS = ("listening", "limits", "timeouts", "access", "tls", "redis", "logging")
"""Sections of the reference table; the Settings line reports limits and timeouts."""


@dataclass(frozen=True)
class Option:
    """One ``serve`` setting.

    *type* is the value's native type (``bool`` makes a switch: ``--echo``), the
    type a TOML value must have; *parse* turns a flag's or variable's text into
    it and raises :class:`argparse.ArgumentTypeError` with the one message every
    source shares. *nonempty* marks a secret (or a secret's path) that must not be
    set and empty, because empty would mean "anyone may connect": it says what to
    set instead. *secret* values are never shown; *shown* renders a value for
    people (a Redis URL with its password hidden).
    """

    flag: str
    type: type[Any]
    default: Any
    help: str
    group: str
    parse: Callable[[str], Any] | None = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    repeatable: bool = False
    secret: bool = False
    nonempty: str | None = None
    shown: Callable[[str], str] | None = None

    @property
    def key(self) -> str:
        """The ``--config`` file key: the flag without its leading dashes."""
        return self.flag[2:]

    @property
    def dest(self) -> str:
        """The argparse attribute: ``max_queue_bytes``."""
        return self.key.replace("-", "_")

    @property
    def env(self) -> str:
        """``TRIO_WS_DEMO_MAX_QUEUE_BYTES``: the prefix, then the key in capitals."""
        return ENV_PREFIX + self.dest.upper()

    def convert(self, text: str) -> Any:
        """One item's text (a flag's, a variable's) as a value, checked like the flag."""
        value = (self.parse or self.type)(text)
        if self.choices is not None and value not in self.choices:
            raise argparse.ArgumentTypeError(
                f"must be one of {', '.join(self.choices)}, not {text!r}"
            )
        return value

    def show(self, value: Any) -> str:
        """*value* as a person may see it: secrets masked, passwords redacted."""
        if value is None:
            return "none"
        if self.secret:
            return "***"
        if self.repeatable:
            return ", ".join(self.show_item(item) for item in value) or "none"
        if self.type is bool:
            return "on" if value else "off"
        return self.show_item(value)

    def show_item(self, item: Any) -> str:
        return self.shown(str(item)) if self.shown is not None else str(item)


_TOKEN_WHAT = "the token clients must present (e.g. openssl rand -hex 32)"
_JWT_WHAT = "the HS256 secret, 32 bytes or more (e.g. openssl rand -hex 32)"

#: Every ``serve`` setting, in ``--help`` order. One entry per setting: add one here.
OPTIONS: tuple[Option, ...] = (
    Option("--host", str, DEFAULT_HOST, "address to listen on", "listening"),
    Option("--port", int, DEFAULT_PORT, "port (0 picks a free one)", "listening", parse=port),
    Option("--echo", bool, False, "send each message back to its sender only", "listening"),
    Option(
        "--slow-client",
        str,
        SlowClientPolicy.CLOSE.value,
        "what to do with a client over its queue budget: close it with 1008, "
        "or drop messages for it",
        "limits",
        choices=tuple(p.value for p in SlowClientPolicy),
    ),
    Option(
        "--compression",
        str,
        ServerOptions.compression.value,
        "permessage-deflate with clients that offer it: 'off' negotiates nothing, "
        "'stateless' compresses each broadcast once on its own, 'room' keeps one "
        "compressor per room (smallest frames; see docs/compression.md)",
        "limits",
        choices=tuple(mode.value for mode in Compression),
    ),
    Option(
        "--max-queue",
        int,
        DEFAULT_MAX_QUEUE_MESSAGES,
        "messages that may wait for one client before it counts as slow",
        "limits",
        parse=positive_int,
        metavar="N",
    ),
    Option(
        "--max-queue-bytes",
        int,
        DEFAULT_MAX_QUEUE_BYTES,
        "bytes that may wait for one client before it counts as slow",
        "limits",
        parse=positive_int,
        metavar="BYTES",
    ),
    Option(
        "--max-message-size",
        int,
        ServerOptions.max_message_size,
        "largest message accepted from a client; larger ones close with 1009",
        "limits",
        parse=positive_int,
        metavar="BYTES",
    ),
    Option(
        "--max-clients",
        int,
        ServerOptions.max_clients,
        "WebSocket clients at once; one more gets HTTP 503",
        "limits",
        parse=positive_int,
        metavar="N",
    ),
    Option(
        "--max-rooms",
        int,
        ServerOptions.max_rooms,
        "rooms at once (a room is the URL path); a new one past this gets HTTP 503",
        "limits",
        parse=positive_int,
        metavar="N",
    ),
    Option(
        "--max-room-name",
        int,
        ServerOptions.max_room_name,
        "longest room name; a longer one gets HTTP 400",
        "limits",
        parse=positive_int,
        metavar="BYTES",
    ),
    Option(
        "--history",
        int,
        ServerOptions.history,
        "messages each room keeps for clients that join later (0: none)",
        "limits",
        parse=non_negative_int,
        metavar="N",
    ),
    Option(
        "--history-bytes",
        int,
        ServerOptions.history_bytes,
        "bytes each room's history may hold; the oldest messages go first",
        "limits",
        parse=positive_int,
        metavar="BYTES",
    ),
    Option(
        "--room-ttl",
        float,
        ServerOptions.room_ttl,
        "a room without clients keeps its history this long, then is freed (0: for "
        "ever); at --max-rooms the least recently used such room gives way first",
        "timeouts",
        parse=non_negative_float,
        metavar="SECONDS",
    ),
    Option(
        "--max-header-size",
        int,
        ServerOptions.max_request_head,
        "largest HTTP request head; a larger one gets HTTP 431",
        "limits",
        parse=head_size,
        metavar="BYTES",
    ),
    Option(
        "--max-pending",
        int,
        ServerOptions.max_pending,
        "connections still sending their TLS handshake or request head; "
        "more wait in the kernel's listen backlog",
        "limits",
        parse=positive_int,
        metavar="N",
    ),
    Option(
        "--handshake-timeout",
        float,
        ServerOptions.handshake_timeout,
        "time a new connection has to finish its opening handshake",
        "timeouts",
        parse=positive_float,
        metavar="SECONDS",
    ),
    Option(
        "--close-timeout",
        float,
        ServerOptions.close_timeout,
        "time to flush queued messages and finish a close handshake",
        "timeouts",
        parse=positive_float,
        metavar="SECONDS",
    ),
    Option(
        "--ping-interval",
        float,
        ServerOptions.ping_interval,
        "ping a peer that has been silent this long (0 disables keepalive)",
        "timeouts",
        parse=non_negative_float,
        metavar="SECONDS",
    ),
    Option(
        "--ping-timeout",
        float,
        ServerOptions.ping_timeout,
        "a pinged peer that stays silent this much longer is disconnected",
        "timeouts",
        parse=positive_float,
        metavar="SECONDS",
    ),
    Option(
        "--shutdown-timeout",
        float,
        ServerOptions.shutdown_timeout,
        "time the 1001 closes may take: on SIGINT from the start, on SIGTERM after "
        "--drain-window; then whoever is left is dropped (a second signal: at once)",
        "timeouts",
        parse=non_negative_float,
        metavar="SECONDS",
    ),
    Option(
        "--drain-window",
        float,
        ServerOptions.drain_window,
        "on SIGTERM, /readyz answers 503 and new WebSocket handshakes 503 with "
        "Retry-After, and the clients are closed with 1001 one by one over this long, "
        "so that they reconnect elsewhere gradually (0: all at once, as SIGINT does)",
        "timeouts",
        parse=non_negative_float,
        metavar="SECONDS",
    ),
    Option(
        "--allow-origin",
        str,
        (),
        "allow WebSocket handshakes only from this exact Origin (repeatable); default: any origin",
        "access",
        metavar="ORIGIN",
        repeatable=True,
    ),
    Option(
        "--public-url",
        str,
        (),
        "where users open the chat page, e.g. https://chat.example.com/ (repeatable): "
        "its origin is always allowed under --allow-origin. Without it, only a page "
        "reached by IP address or localhost counts as the server's own",
        "access",
        metavar="URL",
        repeatable=True,
    ),
    Option(
        "--trusted-proxy",
        str,
        (),
        "a reverse proxy (an address or a network, e.g. 127.0.0.1 or 10.0.0.0/8; "
        "repeatable) whose X-Forwarded-For names the client in log lines: the "
        "rightmost address in it that is not itself a trusted proxy. From anyone "
        "else the header is ignored (default: trust no proxy)",
        "access",
        parse=trusted_proxy,
        metavar="CIDR",
        repeatable=True,
    ),
    Option(
        "--token",
        str,
        None,
        "require this token as 'Authorization: Bearer TOKEN' or '?token=TOKEN' "
        f"(default: from ${ENV_PREFIX}TOKEN, else none)",
        "access",
        metavar="TOKEN",
        secret=True,
        nonempty=_TOKEN_WHAT,
    ),
    Option(
        "--jwt-key",
        str,
        None,
        f"the HS256 secret of signed tokens (default: from ${ENV_PREFIX}JWT_KEY)",
        "access",
        metavar="SECRET",
        secret=True,
        nonempty=_JWT_WHAT,
    ),
    Option(
        "--jwt-public-key",
        str,
        None,
        "accept tokens signed with the private half of this RSA or EC public key "
        f"(PEM): RS256 or ES256 (default: the file named by ${ENV_PREFIX}JWT_PUBLIC_KEY)",
        "access",
        metavar="FILE",
        nonempty="the path of an RSA or EC public key (PEM)",
    ),
    Option(
        "--max-batch",
        int,
        ServerOptions.max_batch,
        "lines one application/x-ndjson POST may publish (413 past it)",
        "limits",
        parse=positive_int,
        metavar="N",
    ),
    Option(
        "--max-message-rate",
        float,
        ServerOptions.max_message_rate,
        "frames per second one client may send on average (messages, fragments and "
        "pings alike); past it the server reads from the client less, so TCP slows it "
        "and nothing is lost (0: no limit)",
        "limits",
        parse=non_negative_float_rate,
        metavar="N",
    ),
    Option(
        "--message-burst",
        int,
        ServerOptions.message_burst,
        "frames one client may send at once, above --max-message-rate "
        "(default: one second's worth of the rate)",
        "limits",
        parse=positive_int,
        metavar="N",
    ),
    Option(
        "--rate-limit-action",
        str,
        ServerOptions.rate_limit_action,
        "over the rate: 'slow' reads less from the client, 'close' closes it "
        "with 1008 'rate limit'",
        "limits",
        choices=("slow", "close"),
    ),
    Option(
        "--max-memory",
        int,
        ServerOptions.max_memory,
        "bytes all peers together may make the server hold (partial messages, "
        "queues, TLS records, backfill, POST bodies); past it a message closes its "
        "sender with 1013 and a join or POST gets 503",
        "limits",
        parse=positive_int,
        metavar="BYTES",
    ),
    Option(
        "--certfile",
        str,
        None,
        "TLS certificate chain (PEM): serve wss://; the key may be in the same file",
        "tls",
        metavar="FILE",
    ),
    Option(
        "--keyfile", str, None, "TLS private key (PEM), if not in --certfile", "tls", metavar="FILE"
    ),
    Option(
        "--redis",
        str,
        None,
        "share rooms, history and offsets with every server process using this Redis: "
        "redis://[:PASSWORD@]HOST:PORT/DB, or through Redis Sentinel "
        "redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/SERVICE[/DB] "
        f"(default: from ${ENV_PREFIX}REDIS, else none)",
        "redis",
        metavar="URL",
        shown=redact_url,
    ),
    Option(
        "--redis-optional",
        bool,
        False,
        "start even if Redis is unreachable: serve locally and keep retrying",
        "redis",
    ),
    Option(
        "--redis-queue",
        int,
        ServerOptions.redis_queue,
        "messages that may wait to be written to Redis; more are dropped and counted",
        "redis",
        parse=positive_int,
        metavar="N",
    ),
    Option(
        "--stream-bytes",
        int,
        ServerOptions.stream_bytes,
        "bytes of messages each room's Redis stream holds (at least --history-bytes); "
        "the oldest go first",
        "redis",
        parse=positive_int,
        metavar="BYTES",
    ),
    Option(
        "--stream-ttl",
        float,
        ServerOptions.stream_ttl,
        "a room's Redis stream is deleted this long after its last message (0: never)",
        "redis",
        parse=non_negative_float,
        metavar="SECONDS",
    ),
    Option(
        "--idempotency-window",
        float,
        ServerOptions.idempotency_window,
        "a POST's Idempotency-Key (or a v1 publish's id) names its first publish "
        "in a room this long: a repeat publishes nothing and gets the same answer",
        "timeouts",
        parse=positive_float,
        metavar="SECONDS",
    ),
    Option(
        "--redis-wait",
        int,
        ServerOptions.redis_wait,
        "answer a POST only once N Redis replicas have its messages (WAIT); "
        "0: once the master has them",
        "redis",
        parse=non_negative_int,
        metavar="N",
    ),
    Option(
        "--reuse-port",
        bool,
        False,
        "let several server processes listen on the same port (SO_REUSEPORT); "
        "the kernel spreads clients over them",
        "listening",
    ),
    Option(
        "--instance",
        str,
        None,
        "this process's name in every log line and in /healthz (default: HOST:PORT)",
        "logging",
        metavar="NAME",
    ),
    Option(
        "--log-level",
        str,
        "info",
        "logging level (INFO logs one line per connection opened and closed)",
        "logging",
        choices=("debug", "info", "warning", "error"),
    ),
    Option(
        "--log-format",
        str,
        "text",
        "log lines as text, or as one JSON object per line",
        "logging",
        choices=("text", "json"),
    ),
    Option(
        "--access-log",
        str,
        "on",
        "one INFO line per HTTP request (upgrades too, as 101) on the "
        "trio_ws_demo.access logger; probes that succeed at DEBUG",
        "logging",
        choices=("on", "off"),
    ),
)


def by_key() -> dict[str, Option]:
    """Each option under its ``--config`` key."""
    return {option.key: option for option in OPTIONS}


def add_flags(parser: argparse.ArgumentParser, options: Sequence[Option] = OPTIONS) -> None:
    """One flag per option. Each flag's action notes that it was typed, which
    is what lets a flag beat the environment and the file even when its value
    is the default."""
    for option in options:
        common: dict[str, Any] = {"help": option.help, "dest": option.dest}
        if option.type is bool:
            parser.add_argument(option.flag, action=_Switch, default=option.default, **common)
            continue
        common.update(type=option.parse or option.type, metavar=option.metavar)
        if option.choices is not None:
            common["choices"] = list(option.choices)
        if option.repeatable:
            parser.add_argument(option.flag, action=_Append, default=list(option.default), **common)
        else:
            parser.add_argument(option.flag, action=_Store, default=option.default, **common)


def given_on_command_line(args: argparse.Namespace) -> frozenset[str]:
    """The dests of the settings whose flag was typed."""
    return frozenset(getattr(args, GIVEN, ()))


def _note(namespace: argparse.Namespace, dest: str) -> None:
    given = getattr(namespace, GIVEN, None)
    if given is None:
        given = set()
        setattr(namespace, GIVEN, given)
    given.add(dest)


class _Store(argparse.Action):
    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)
        _note(namespace, self.dest)


class _Switch(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, True)
        _note(namespace, self.dest)


class _Append(argparse.Action):
    """Repeatable: typed values replace the default (and the environment's, the
    file's), they do not add to them."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        typed = self.dest in given_on_command_line(namespace)
        items = list(getattr(namespace, self.dest)) if typed else []
        setattr(namespace, self.dest, [*items, values])
        _note(namespace, self.dest)
