"""``trio-ws-demo serve``: its flags, and running the server until a signal."""

from __future__ import annotations

import argparse
import gc
import ipaddress
import logging
import os
import signal
import ssl
import sys
import urllib.parse
from collections.abc import Callable
from typing import Any

import trio

from ..access import AccessPolicy, origin_of
from ..backplane.sentinel_url import is_sentinel_url, parse_sentinel_url
from ..errors import BackplaneUnavailable
from ..extensions import Compression
from ..http import format_host
from ..hub import DEFAULT_MAX_QUEUE_BYTES, DEFAULT_MAX_QUEUE_MESSAGES, InboxBudget, SlowClientPolicy
from ..redact import redact_url
from ..server import DEFAULT_HOST, DEFAULT_PORT, BroadcastServer, ServerOptions, ServerStartupError
from .flags import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    TOKEN_ENV,
    EmptySecret,
    HelpFormatter,
    head_size,
    non_negative_float,
    non_negative_float_rate,
    non_negative_int,
    port,
    positive_float,
    positive_int,
    read_server_token,
)
from .jwtkeys import KeyError_, add_key_flags, jwt_public_key, jwt_secret, warn_if_short
from .logs import InstanceFilter
from .logs import configure as configure_logging

__all__ = ["REDIS_ENV", "add_parser", "listening_line", "run"]

REDIS_ENV = "TRIO_WS_DEMO_REDIS"
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel")
"""Read when the server starts, like the token: ``--help`` never shows a password."""


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``serve`` and its flags to *commands* (an argparse subparsers action)."""
    serve: argparse.ArgumentParser = commands.add_parser(
        "serve",
        help="run the broadcast server",
        description="Relay every message from any client to all connected clients.",
        formatter_class=HelpFormatter,
    )
    serve.add_argument("--host", default=DEFAULT_HOST, help="address to listen on")
    serve.add_argument("--port", type=port, default=DEFAULT_PORT, help="port (0 picks a free one)")
    serve.add_argument(
        "--echo", action="store_true", help="send each message back to its sender only"
    )
    serve.add_argument(
        "--slow-client",
        choices=[p.value for p in SlowClientPolicy],
        default=SlowClientPolicy.CLOSE.value,
        help="what to do with a client over its queue budget: close it with 1008, "
        "or drop messages for it",
    )
    serve.add_argument(
        "--compression",
        choices=[mode.value for mode in Compression],
        default=ServerOptions.compression.value,
        help="permessage-deflate with clients that offer it: 'off' negotiates nothing, "
        "'stateless' compresses each broadcast once on its own, 'room' keeps one "
        "compressor per room (smallest frames; see docs/compression.md)",
    )
    serve.add_argument(
        "--max-queue",
        type=positive_int,
        default=DEFAULT_MAX_QUEUE_MESSAGES,
        metavar="N",
        help="messages that may wait for one client before it counts as slow",
    )
    serve.add_argument(
        "--max-queue-bytes",
        type=positive_int,
        default=DEFAULT_MAX_QUEUE_BYTES,
        metavar="BYTES",
        help="bytes that may wait for one client before it counts as slow",
    )
    serve.add_argument(
        "--max-message-size",
        type=positive_int,
        default=ServerOptions.max_message_size,
        metavar="BYTES",
        help="largest message accepted from a client; larger ones close with 1009",
    )
    serve.add_argument(
        "--max-clients",
        type=positive_int,
        default=ServerOptions.max_clients,
        metavar="N",
        help="WebSocket clients at once; one more gets HTTP 503",
    )
    serve.add_argument(
        "--max-rooms",
        type=positive_int,
        default=ServerOptions.max_rooms,
        metavar="N",
        help="rooms at once (a room is the URL path); a new one past this gets HTTP 503",
    )
    serve.add_argument(
        "--max-room-name",
        type=positive_int,
        default=ServerOptions.max_room_name,
        metavar="BYTES",
        help="longest room name; a longer one gets HTTP 400",
    )
    serve.add_argument(
        "--history",
        type=non_negative_int,
        default=ServerOptions.history,
        metavar="N",
        help="messages each room keeps for clients that join later (0: none)",
    )
    serve.add_argument(
        "--history-bytes",
        type=positive_int,
        default=ServerOptions.history_bytes,
        metavar="BYTES",
        help="bytes each room's history may hold; the oldest messages go first",
    )
    serve.add_argument(
        "--room-ttl",
        type=non_negative_float,
        default=ServerOptions.room_ttl,
        metavar="SECONDS",
        help="a room without clients keeps its history this long, then is freed (0: for "
        "ever); at --max-rooms the least recently used such room gives way first",
    )
    serve.add_argument(
        "--max-header-size",
        type=head_size,
        default=ServerOptions.max_request_head,
        metavar="BYTES",
        help="largest HTTP request head; a larger one gets HTTP 431",
    )
    serve.add_argument(
        "--max-pending",
        type=positive_int,
        default=ServerOptions.max_pending,
        metavar="N",
        help="connections still sending their TLS handshake or request head; "
        "more wait in the kernel's listen backlog",
    )
    serve.add_argument(
        "--handshake-timeout",
        type=positive_float,
        default=ServerOptions.handshake_timeout,
        metavar="SECONDS",
        help="time a new connection has to finish its opening handshake",
    )
    serve.add_argument(
        "--close-timeout",
        type=positive_float,
        default=ServerOptions.close_timeout,
        metavar="SECONDS",
        help="time to flush queued messages and finish a close handshake",
    )
    serve.add_argument(
        "--ping-interval",
        type=non_negative_float,
        default=ServerOptions.ping_interval,
        metavar="SECONDS",
        help="ping a peer that has been silent this long (0 disables keepalive)",
    )
    serve.add_argument(
        "--ping-timeout",
        type=positive_float,
        default=ServerOptions.ping_timeout,
        metavar="SECONDS",
        help="a pinged peer that stays silent this much longer is disconnected",
    )
    serve.add_argument(
        "--shutdown-timeout",
        type=non_negative_float,
        default=ServerOptions.shutdown_timeout,
        metavar="SECONDS",
        help="on SIGINT/SIGTERM, time to close every client with 1001 (a second Ctrl-C: at once)",
    )
    serve.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow WebSocket handshakes only from this exact Origin (repeatable); "
        "default: any origin",
    )
    serve.add_argument(
        "--public-url",
        action="append",
        default=[],
        metavar="URL",
        help="where users open the chat page, e.g. https://chat.example.com/ (repeatable): "
        "its origin is always allowed under --allow-origin. Without it, only a page "
        "reached by IP address or localhost counts as the server's own",
    )
    serve.add_argument(
        "--token",
        default=argparse.SUPPRESS,
        metavar="TOKEN",
        help=f"require this token as 'Authorization: Bearer TOKEN' or '?token=TOKEN' "
        f"(default: from ${TOKEN_ENV}, else none)",
    )
    add_key_flags(serve, private=False)
    serve.add_argument(
        "--max-batch",
        type=positive_int,
        default=ServerOptions.max_batch,
        metavar="N",
        help="lines one application/x-ndjson POST may publish (413 past it)",
    )
    serve.add_argument(
        "--max-message-rate",
        type=non_negative_float_rate,
        default=ServerOptions.max_message_rate,
        metavar="N",
        help="frames per second one client may send on average (messages, fragments and "
        "pings alike); past it the server reads from the client less, so TCP slows it "
        "and nothing is lost (0: no limit)",
    )
    serve.add_argument(
        "--message-burst",
        type=positive_int,
        default=ServerOptions.message_burst,
        metavar="N",
        help="frames one client may send at once, above --max-message-rate "
        "(default: one second's worth of the rate)",
    )
    serve.add_argument(
        "--rate-limit-action",
        choices=("slow", "close"),
        default=ServerOptions.rate_limit_action,
        help="over the rate: 'slow' reads less from the client, 'close' closes it "
        "with 1008 'rate limit'",
    )
    serve.add_argument(
        "--max-memory",
        type=positive_int,
        default=ServerOptions.max_memory,
        metavar="BYTES",
        help="bytes all peers together may make the server hold (partial messages, "
        "queues, TLS records, backfill, POST bodies); past it a message closes its "
        "sender with 1013 and a join or POST gets 503",
    )
    serve.add_argument(
        "--certfile",
        metavar="FILE",
        help="TLS certificate chain (PEM): serve wss://; the key may be in the same file",
    )
    serve.add_argument(
        "--keyfile", metavar="FILE", help="TLS private key (PEM), if not in --certfile"
    )
    serve.add_argument(
        "--redis",
        default=argparse.SUPPRESS,
        metavar="URL",
        help="share rooms, history and offsets with every server process using this Redis: "
        "redis://[:PASSWORD@]HOST:PORT/DB, or through Redis Sentinel "
        "redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/SERVICE[/DB] "
        f"(default: from ${REDIS_ENV}, else none)",
    )
    serve.add_argument(
        "--redis-optional",
        action="store_true",
        help="start even if Redis is unreachable: serve locally and keep retrying",
    )
    serve.add_argument(
        "--redis-queue",
        type=positive_int,
        default=ServerOptions.redis_queue,
        metavar="N",
        help="messages that may wait to be written to Redis; more are dropped and counted",
    )
    serve.add_argument(
        "--stream-bytes",
        type=positive_int,
        default=ServerOptions.stream_bytes,
        metavar="BYTES",
        help="bytes of messages each room's Redis stream holds (at least --history-bytes); "
        "the oldest go first",
    )
    serve.add_argument(
        "--stream-ttl",
        type=non_negative_float,
        default=ServerOptions.stream_ttl,
        metavar="SECONDS",
        help="a room's Redis stream is deleted this long after its last message (0: never)",
    )
    serve.add_argument(
        "--idempotency-window",
        type=positive_float,
        default=ServerOptions.idempotency_window,
        metavar="SECONDS",
        help="a POST's Idempotency-Key (or a v1 publish's id) names its first publish "
        "in a room this long: a repeat publishes nothing and gets the same answer",
    )
    serve.add_argument(
        "--redis-wait",
        type=non_negative_int,
        default=ServerOptions.redis_wait,
        metavar="N",
        help="answer a POST only once N Redis replicas have its messages (WAIT); "
        "0: once the master has them",
    )
    serve.add_argument(
        "--reuse-port",
        action="store_true",
        help="let several server processes listen on the same port (SO_REUSEPORT); "
        "the kernel spreads clients over them",
    )
    serve.add_argument(
        "--instance",
        metavar="NAME",
        help="this process's name in every log line and in /healthz (default: HOST:PORT)",
    )
    serve.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="info",
        help="logging level (INFO logs one line per connection opened and closed)",
    )
    serve.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="log lines as text, or as one JSON object per line",
    )
    return serve


def run(args: argparse.Namespace) -> int:
    instance = InstanceFilter(args.instance or f"{format_host(args.host or '0.0.0.0')}:{args.port}")
    configure_logging(args.log_level, args.log_format, instance)
    if args.keyfile and not args.certfile:
        print("error: --keyfile needs --certfile", file=sys.stderr)
        return EXIT_USAGE
    redis = getattr(args, "redis", None) or os.environ.get(REDIS_ENV) or None
    if redis is not None and urllib.parse.urlsplit(redis).scheme not in REDIS_SCHEMES:
        print(
            "error: --redis takes a redis://, rediss://, unix:// or redis+sentinel:// URL, "
            f"not {redact_url(redis)!r}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if redis is not None and is_sentinel_url(redis):
        try:
            parse_sentinel_url(redis)
        except BackplaneUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    try:
        public_origins = frozenset(origin_of(url) for url in args.public_url)
    except ValueError as exc:
        print(f"error: --public-url: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        token = read_server_token(args)
        jwt_key, public_key = jwt_secret(args, strict=True), jwt_public_key(args)
    except EmptySecret as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyError_ as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    warn_if_short(jwt_key)
    ssl_context = None
    if args.certfile:
        try:
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(args.certfile, args.keyfile)
        except (OSError, ssl.SSLError) as exc:
            if args.keyfile is None and not _has_private_key(args.certfile):
                print(
                    f"error: no private key in {args.certfile}: add --keyfile KEY.pem",
                    file=sys.stderr,
                )
                return EXIT_FAILURE
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            print(
                f"error: cannot load --certfile {args.certfile}"
                + (f" / --keyfile {args.keyfile}" if args.keyfile else "")
                + ": "
                f"{reason}; check the paths and that the key matches the certificate",
                file=sys.stderr,
            )
            return EXIT_FAILURE
    options = ServerOptions(
        echo=args.echo,
        budget=InboxBudget(max_messages=args.max_queue, max_bytes=args.max_queue_bytes),
        slow_client=SlowClientPolicy(args.slow_client),
        compression=Compression(args.compression),
        max_message_size=args.max_message_size,
        max_clients=args.max_clients,
        max_rooms=args.max_rooms,
        max_room_name=args.max_room_name,
        history=args.history,
        history_bytes=args.history_bytes,
        room_ttl=args.room_ttl or None,
        max_request_head=args.max_header_size,
        max_pending=args.max_pending,
        handshake_timeout=args.handshake_timeout,
        close_timeout=args.close_timeout,
        ping_interval=args.ping_interval or None,
        ping_timeout=args.ping_timeout,
        shutdown_timeout=args.shutdown_timeout,
        access=AccessPolicy(
            allow_origins=frozenset(args.allow_origin),
            token=token,
            public_origins=public_origins,
            jwt_secret=jwt_key,
            jwt_public_key=public_key,
        ),
        max_batch=args.max_batch,
        max_message_rate=args.max_message_rate,
        message_burst=args.message_burst,
        rate_limit_action=args.rate_limit_action,
        max_memory=args.max_memory,
        ssl_context=ssl_context,
        redis=redis,
        redis_optional=args.redis_optional,
        redis_queue=args.redis_queue,
        stream_bytes=args.stream_bytes,
        stream_ttl=args.stream_ttl,
        redis_wait=args.redis_wait,
        idempotency_window=args.idempotency_window,
        reuse_port=args.reuse_port,
        instance=args.instance,
    )
    _raise_open_file_limit()
    _tune_garbage_collection()
    try:
        error = trio.run(
            _run_server, options, args.host, args.port, instance, lambda: _reload(args, options)
        )
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    if error is not None:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


async def _run_server(
    options: ServerOptions,
    host: str,
    port: int,
    instance: InstanceFilter | None = None,
    reload: Callable[[], None] | None = None,
) -> ServerStartupError | None:
    """Serve until SIGINT or SIGTERM (a second one: stop at once), reloading on
    SIGHUP; return a startup error."""
    server = BroadcastServer(options)
    error: ServerStartupError | None = None
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async with trio.open_nursery() as outer:
            serving = trio.CancelScope()

            async def on_signals() -> None:
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        if reload is not None:
                            reload()
                    elif serving.cancel_called:
                        server.abort()
                    else:
                        logging.getLogger(__name__).debug(
                            "%s received: shutting down", signal.Signals(signum).name
                        )
                        serving.cancel()

            outer.start_soon(on_signals)
            with serving:
                async with trio.open_nursery() as nursery:
                    try:
                        bound = await nursery.start(server.run, host, port)
                    except ServerStartupError as exc:
                        error = exc
                    else:
                        gc.freeze()  # what start-up made lives for good: never scan it again
                        if instance is not None and not options.instance:
                            instance.instance = server.instance  # HOST:PORT, /PID with --reuse-port
                        print(listening_line(options, host, bound), flush=True)
                        warn_if_open(options, server.addresses)
            outer.cancel_scope.cancel()
    return error


def listening_line(options: ServerOptions, host: str, port: int) -> str:
    """The one startup line: where the WebSocket server and its chat page are, and
    the authentication mode. (``--host ""`` listens on every IPv4 interface, so it
    says 0.0.0.0.) Scripts read its third word as the URL: that stays so."""
    shown = format_host(host or "0.0.0.0")
    page = "https" if options.ssl_context else "http"
    return (
        f"Listening on {options.scheme}://{shown}:{port} (chat page: {page}://{shown}:{port}/)"
        f", auth: {options.access.mode}"
    )


def warn_if_open(options: ServerOptions, addresses: list[str]) -> None:
    """One WARNING when the server needs no credential and listens beyond this
    machine (any address that is not loopback: 0.0.0.0, ::, a LAN address)."""
    if options.access.verifier.required:
        return
    exposed = [a for a in addresses if not _is_loopback(a)]
    if exposed:
        logging.getLogger("trio_ws_demo.server").warning(
            "no authentication, and listening on %s: anyone who can reach it can connect "
            "and publish; pass --token, --jwt-key or --jwt-public-key, or --host 127.0.0.1",
            ", ".join(format_host(a) for a in exposed),
            extra={"event": "open_to_network"},
        )


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


#: Allocations between young-generation collections (CPython's default: 700).
#: Each connection allocates about a hundred tracked objects, so the default
#: collects several times per handshake; this measured about 30% less CPU per
#: handshake. Only the command line sets it: library users keep their own.
GC_THRESHOLD = (20_000, 20, 100)


def _tune_garbage_collection() -> None:
    gc.set_threshold(*GC_THRESHOLD)


def _has_private_key(path: str) -> bool:
    """True unless *path* is a readable PEM file with no private key in it."""
    try:
        with open(path, "rb") as pem:
            return b"PRIVATE KEY-----" in pem.read(1 << 20)
    except OSError:
        return True  # unreadable: the caller's error says so


def _raise_open_file_limit() -> None:
    """Each client is a file descriptor: lift the soft limit to the hard one."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


def _reload(args: argparse.Namespace, options: ServerOptions) -> None:
    """SIGHUP: read the TLS certificate and key, and the JWT keys, again. New
    handshakes use the new ones and no connection is dropped; a file that does
    not load keeps the old ones, with one ERROR line (a renewal gone wrong must
    not take the service down)."""
    log = logging.getLogger("trio_ws_demo.server")
    context = options.ssl_context
    if args.certfile and context is not None:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                args.certfile, args.keyfile
            )  # a trial first: a failed load must not leave the live context half done
            context.load_cert_chain(args.certfile, args.keyfile)
        except (OSError, ssl.SSLError) as exc:
            log.error("SIGHUP: kept the old certificate (%s: %s)", args.certfile, exc)
        else:
            log.info("SIGHUP: reloaded the certificate from %s", args.certfile)
    if options.access.jwt_secret is not None or options.access.jwt_public_key is not None:
        try:
            options.access.reload_keys(jwt_secret(args, strict=True), jwt_public_key(args))
        except (KeyError_, EmptySecret, ValueError) as exc:
            log.error("SIGHUP: kept the old JWT keys (%s)", exc)
        else:
            log.info("SIGHUP: reloaded the JWT keys")
