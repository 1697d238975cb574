"""``trio-ws-demo serve``: its flags (declared in :mod:`.schema`, resolved from
flags, environment and file in :mod:`.config`), and running the server until a
signal."""

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
from ..forwarded import TrustedProxies, parse_network
from ..http import format_host
from ..hub import InboxBudget, SlowClientPolicy
from ..redact import redact_url
from ..server import BroadcastServer, ServerOptions, ServerStartupError
from .config import CONFIG_ENV, ConfigError, resolve, unknown_variables
from .effective import print_config, settings_line
from .flags import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    EmptySecret,
    HelpFormatter,
    read_server_token,
)
from .jwtkeys import KeyError_, jwt_public_key, jwt_secret, warn_if_short
from .logs import InstanceFilter
from .logs import configure as configure_logging
from .schema import ENV_PREFIX, add_flags, by_key

__all__ = ["REDIS_ENV", "add_parser", "listening_line", "run"]

REDIS_ENV = by_key()["redis"].env
"""Read when the server starts, like the token: ``--help`` never shows a password."""
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel")


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``serve`` and its flags to *commands* (an argparse subparsers action)."""
    serve: argparse.ArgumentParser = commands.add_parser(
        "serve",
        help="run the broadcast server",
        description="Relay every message from any client to all connected clients.",
        formatter_class=HelpFormatter,
        epilog=f"Each flag can also be set by a variable, --max-queue-bytes by "
        f"${ENV_PREFIX}MAX_QUEUE_BYTES (a repeatable one: comma-separated), or by a "
        "--config file key, max-queue-bytes. A flag wins over the variable, the "
        "variable over the file. See docs/configuration.md.",
    )
    add_flags(serve)
    serve.add_argument(
        "--config",
        metavar="FILE",
        help=f"read settings from this TOML file (default: the file ${CONFIG_ENV} names); "
        "its keys are these flags without the dashes",
    )
    serve.add_argument(
        "--print-config",
        action="store_true",
        help="print every effective setting and where it came from, then exit",
    )
    serve.add_argument(
        "--check-config",
        action="store_true",
        help="check every setting, and load the certificate and the keys, without "
        "listening: 'config OK' and exit 0, or the one-line error",
    )
    return serve


def run(args: argparse.Namespace) -> int:
    try:
        settings = resolve(args, os.environ, args.config or os.environ.get(CONFIG_ENV) or None)
    except (ConfigError, EmptySecret) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for warning in unknown_variables(os.environ):
        print(warning, file=sys.stderr)
    if args.print_config:
        print(print_config(settings))
        return EXIT_OK
    settings.apply(args)
    instance = InstanceFilter(args.instance or f"{format_host(args.host or '0.0.0.0')}:{args.port}")
    configure_logging(args.log_level, args.log_format, instance)
    options = _server_options(args)
    if isinstance(options, int):
        return options
    if args.check_config:
        print("config OK")
        return EXIT_OK
    summary = settings_line(settings, options.access.mode)
    _raise_open_file_limit()
    _tune_garbage_collection()
    try:
        error = trio.run(
            _run_server,
            options,
            args.host,
            args.port,
            instance,
            lambda: _reload(args, options),
            summary,
        )
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    if error is not None:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _server_options(args: argparse.Namespace) -> ServerOptions | int:
    """The server's options from the effective settings, after every check
    that needs no socket (what ``--check-config`` runs); else the exit status,
    its one line printed."""
    if args.keyfile and not args.certfile:
        print("error: --keyfile needs --certfile", file=sys.stderr)
        return EXIT_USAGE
    redis = args.redis or None
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
    return ServerOptions(
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
        drain_window=args.drain_window,
        trusted_proxies=TrustedProxies(tuple(parse_network(n) for n in args.trusted_proxy)),
        access_log=args.access_log == "on",
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


async def _run_server(
    options: ServerOptions,
    host: str,
    port: int,
    instance: InstanceFilter | None = None,
    reload: Callable[[], None] | None = None,
    summary: str | None = None,
) -> ServerStartupError | None:
    """Serve until SIGINT or SIGTERM, reloading on SIGHUP; return a startup error.
    *summary* is printed after the Listening line.

    SIGTERM (what systemd, Docker and Kubernetes send) drains: the clients are
    closed over --drain-window, so they reconnect elsewhere gradually. SIGINT
    (a person's Ctrl-C) closes them all at once, as a person wants it gone.
    A second signal of either kind stops at once."""
    server = BroadcastServer(options)
    error: ServerStartupError | None = None
    started = False
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async with trio.open_nursery() as outer:
            serving = trio.CancelScope()

            async def on_signals() -> None:
                stopping = False
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        if reload is not None:
                            reload()
                    elif stopping:
                        server.abort()
                        serving.cancel()
                    else:
                        stopping = True
                        logging.getLogger(__name__).debug(
                            "%s received: shutting down", signal.Signals(signum).name
                        )
                        if signum == signal.SIGTERM and started:
                            server.drain()  # run() returns once the clients are closed
                        else:
                            serving.cancel()

            outer.start_soon(on_signals)
            with serving:
                async with trio.open_nursery() as nursery:
                    try:
                        bound = await nursery.start(server.run, host, port)
                    except ServerStartupError as exc:
                        error = exc
                    else:
                        started = True
                        gc.freeze()  # what start-up made lives for good: never scan it again
                        if instance is not None and not options.instance:
                            instance.instance = server.instance  # HOST:PORT, /PID with --reuse-port
                        print(listening_line(options, host, bound), flush=True)
                        if summary is not None:
                            print(summary, flush=True)
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
