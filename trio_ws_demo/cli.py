"""Command line: ``trio-ws-demo serve`` and ``trio-ws-demo echo``.

This is the only module that prints, configures logging or calls
:func:`trio.run`. Everything it does is also available as a library call.
Exit codes: 0 success, 1 failure (one line on stderr says why), 2 usage error.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import json
import logging
import os
import signal
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TextIO

import trio

from . import __version__
from .client import (
    DEFAULT_MESSAGE,
    DEFAULT_URL,
    ClientError,
    Closed,
    EchoResult,
    Event,
    Message,
    Notice,
    Opened,
    Ponged,
    Received,
    Reconnecting,
    Resumed,
    Sent,
    parse_url,
    run_client,
    run_interactive,
)
from .handshake import AccessPolicy
from .hub import DEFAULT_MAX_QUEUE_BYTES, DEFAULT_MAX_QUEUE_MESSAGES, InboxBudget, SlowClientPolicy
from .listen import format_host
from .logs import configure as configure_logging
from .server import DEFAULT_HOST, DEFAULT_PORT, BroadcastServer, ServerOptions, ServerStartupError

__all__ = ["escape", "main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

TOKEN_ENV = "TRIO_WS_DEMO_TOKEN"

# C0 and C1 control characters and DEL, shown as escapes so that a remote peer
# cannot move the cursor, change colours or retitle the terminal.
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]}
_CONTROL.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def escape(message: Message, binary: str = "repr") -> str:
    """Make remote content safe to print: text with control characters escaped; bytes as
    a Python literal (``repr``), ``hex`` or ``base64``."""
    if isinstance(message, bytes):
        if binary == "hex":
            return message.hex()
        if binary == "base64":
            return base64.b64encode(message).decode("ascii")
        return repr(message)
    return message.translate(_CONTROL)


def _number(
    text: str, kind: type[int] | type[float], ok: Callable[[float], bool], what: str
) -> float:
    """Parse a flag's value; a clear message (never a function name) when it is wrong."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, not {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {what}, not {text!r}")
    return value


def _positive_float(text: str) -> float:
    return _number(text, float, lambda v: v > 0, "a positive number of seconds")


def _non_negative_float(text: str) -> float:
    return _number(text, float, lambda v: v >= 0, "zero or more seconds")


def _positive_int(text: str) -> int:
    return int(_number(text, int, lambda v: v >= 1, "a whole number of at least 1"))


def _non_negative_int(text: str) -> int:
    return int(_number(text, int, lambda v: v >= 0, "a whole number, zero or more"))


def _head_size(text: str) -> int:
    return int(_number(text, int, lambda v: v >= 256, "a whole number of bytes, at least 256"))


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number, not {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, not {text}")
    return value


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME:VALUE, not {text!r}")
    return name.strip(), value.strip()


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show a default only when there is one to show (not None, [] or off)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, [], False, argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trio-ws-demo",
        description="A Trio WebSocket broadcast server and echo test client.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the broadcast server",
        description="Relay every message from any client to all connected clients.",
        formatter_class=_HelpFormatter,
    )
    serve.add_argument("--host", default=DEFAULT_HOST, help="address to listen on")
    serve.add_argument("--port", type=_port, default=DEFAULT_PORT, help="port (0 picks a free one)")
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
        "--max-queue",
        type=_positive_int,
        default=DEFAULT_MAX_QUEUE_MESSAGES,
        metavar="N",
        help="messages that may wait for one client before it counts as slow",
    )
    serve.add_argument(
        "--max-queue-bytes",
        type=_positive_int,
        default=DEFAULT_MAX_QUEUE_BYTES,
        metavar="BYTES",
        help="bytes that may wait for one client before it counts as slow",
    )
    serve.add_argument(
        "--max-message-size",
        type=_positive_int,
        default=ServerOptions.max_message_size,
        metavar="BYTES",
        help="largest message accepted from a client; larger ones close with 1009",
    )
    serve.add_argument(
        "--max-clients",
        type=_positive_int,
        default=ServerOptions.max_clients,
        metavar="N",
        help="WebSocket clients at once; one more gets HTTP 503",
    )
    serve.add_argument(
        "--max-rooms",
        type=_positive_int,
        default=ServerOptions.max_rooms,
        metavar="N",
        help="rooms at once (a room is the URL path); a new one past this gets HTTP 503",
    )
    serve.add_argument(
        "--max-room-name",
        type=_positive_int,
        default=ServerOptions.max_room_name,
        metavar="BYTES",
        help="longest room name; a longer one gets HTTP 400",
    )
    serve.add_argument(
        "--history",
        type=_non_negative_int,
        default=ServerOptions.history,
        metavar="N",
        help="messages each room keeps for clients that join later (0: none)",
    )
    serve.add_argument(
        "--history-bytes",
        type=_positive_int,
        default=ServerOptions.history_bytes,
        metavar="BYTES",
        help="bytes each room's history may hold; the oldest messages go first",
    )
    serve.add_argument(
        "--max-header-size",
        type=_head_size,
        default=ServerOptions.max_request_head,
        metavar="BYTES",
        help="largest HTTP request head; a larger one gets HTTP 431",
    )
    serve.add_argument(
        "--handshake-timeout",
        type=_positive_float,
        default=ServerOptions.handshake_timeout,
        metavar="SECONDS",
        help="time a new connection has to finish its opening handshake",
    )
    serve.add_argument(
        "--close-timeout",
        type=_positive_float,
        default=ServerOptions.close_timeout,
        metavar="SECONDS",
        help="time to flush queued messages and finish a close handshake",
    )
    serve.add_argument(
        "--ping-interval",
        type=_non_negative_float,
        default=ServerOptions.ping_interval,
        metavar="SECONDS",
        help="ping a peer that has been silent this long (0 disables keepalive)",
    )
    serve.add_argument(
        "--ping-timeout",
        type=_positive_float,
        default=ServerOptions.ping_timeout,
        metavar="SECONDS",
        help="a pinged peer that stays silent this much longer is disconnected",
    )
    serve.add_argument(
        "--shutdown-timeout",
        type=_non_negative_float,
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
        "--token",
        default=argparse.SUPPRESS,
        metavar="TOKEN",
        help=f"require this token as 'Authorization: Bearer TOKEN' or '?token=TOKEN' "
        f"(default: from ${TOKEN_ENV}, else none)",
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

    echo = commands.add_parser(
        "echo",
        help="send messages to a WebSocket server and print the echoes",
        description="Connect, send each MESSAGE, print what comes back, close with 1000. "
        "Exit status: 0 when every message came back, 1 otherwise, 2 for usage errors.",
        formatter_class=_HelpFormatter,
    )
    echo.add_argument("url", nargs="?", default=DEFAULT_URL, metavar="URL", help="ws:// or wss://")
    echo.add_argument(
        "messages",
        nargs="*",
        default=argparse.SUPPRESS,
        metavar="MESSAGE",
        help=f"messages to send (default: {DEFAULT_MESSAGE!r}); '-' reads lines from stdin",
    )
    echo.add_argument(
        "--timeout",
        type=_positive_float,
        default=5.0,
        metavar="SECONDS",
        help="time to wait for the connection and for each echo",
    )
    echo.add_argument(
        "--listen",
        action="store_true",
        help="after sending, stay connected and print every message until the server "
        "closes or Ctrl-C",
    )
    echo.add_argument(
        "--binary-output",
        choices=["repr", "hex", "base64"],
        default="repr",
        help="how binary messages print: a Python bytes literal, hex, or base64",
    )
    echo.add_argument(
        "--allow-insecure-token",
        action="store_true",
        help="send the token over plain ws:// to a host that is not this machine",
    )
    echo.add_argument(
        "-i",
        "--interactive",
        action="store_true",
        help="send each line you type and print each message the moment it arrives; "
        "/ping, /close [CODE [REASON]], /binary HEX (the same as --listen -)",
    )
    echo.add_argument(
        "--json",
        action="store_true",
        help="use the server's trio-ws-demo.v1 subprotocol and print each frame as sent: "
        "one JSON object per line (room, offset, time, text or base64)",
    )
    echo.add_argument(
        "--resume",
        action="store_true",
        help="with --listen: when the server goes away, reconnect with backoff and get what "
        "was missed (trio-ws-demo.v1 offsets); says so when something may be missing",
    )
    echo.add_argument(
        "--count",
        type=_non_negative_int,
        default=1,
        metavar="N",
        help="send the messages N times (0: send nothing, useful with --listen)",
    )
    echo.add_argument(
        "--interval",
        type=_non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="pause between messages",
    )
    echo.add_argument("--binary", action="store_true", help="send binary frames instead of text")
    echo.add_argument(
        "-H",
        "--header",
        type=_header,
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="extra handshake header (repeatable)",
    )
    echo.add_argument(
        "--subprotocol", action="append", default=[], metavar="NAME", help="offer a subprotocol"
    )
    echo.add_argument("--cacert", metavar="FILE", help="trust this CA certificate (PEM) for wss://")
    echo.add_argument(
        "--insecure", action="store_true", help="do not verify the server's TLS certificate"
    )
    echo.add_argument(
        "--token",
        default=argparse.SUPPRESS,
        metavar="TOKEN",
        help=f"send 'Authorization: Bearer TOKEN' (default: from ${TOKEN_ENV}, else none)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command == "serve":
        return _serve(args)
    return _echo(args)


# -- serve --------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    configure_logging(args.log_level, args.log_format)
    if args.keyfile and not args.certfile:
        print("error: --keyfile needs --certfile", file=sys.stderr)
        return EXIT_USAGE
    ssl_context = None
    if args.certfile:
        try:
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(args.certfile, args.keyfile)
        except (OSError, ssl.SSLError) as exc:
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
        max_message_size=args.max_message_size,
        max_clients=args.max_clients,
        max_rooms=args.max_rooms,
        max_room_name=args.max_room_name,
        history=args.history,
        history_bytes=args.history_bytes,
        max_request_head=args.max_header_size,
        handshake_timeout=args.handshake_timeout,
        close_timeout=args.close_timeout,
        ping_interval=args.ping_interval or None,
        ping_timeout=args.ping_timeout,
        shutdown_timeout=args.shutdown_timeout,
        access=AccessPolicy(allow_origins=frozenset(args.allow_origin), token=_token(args)),
        ssl_context=ssl_context,
    )
    _raise_open_file_limit()
    try:
        error = trio.run(_run_server, options, args.host, args.port)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    if error is not None:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


async def _run_server(options: ServerOptions, host: str, port: int) -> ServerStartupError | None:
    """Serve until SIGINT or SIGTERM (a second one: stop at once); return a startup error."""
    server = BroadcastServer(options)
    error: ServerStartupError | None = None
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as outer:
            serving = trio.CancelScope()

            async def on_signals() -> None:
                async for signum in signals:
                    if serving.cancel_called:
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
                        shown = format_host(host or "0.0.0.0")
                        page = "https" if options.ssl_context else "http"
                        print(
                            f"Listening on {options.scheme}://{shown}:{bound} "
                            f"(chat page: {page}://{shown}:{bound}/)",
                            flush=True,
                        )
            outer.cancel_scope.cancel()
    return error


def _raise_open_file_limit() -> None:
    """Each client is a file descriptor: lift the soft limit to the hard one."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


# -- echo ---------------------------------------------------------------------


def _echo(args: argparse.Namespace) -> int:
    first = args.url.split("/")[0]
    if "://" not in args.url and "." not in first and ":" not in first:
        # `echo hello` means the message "hello" to the default URL, not a host "hello".
        args.messages = [args.url, *getattr(args, "messages", [])]
        args.url = DEFAULT_URL
    try:
        target = parse_url(args.url)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.insecure and args.cacert:
        print("error: --insecure and --cacert cannot be used together", file=sys.stderr)
        return EXIT_USAGE
    if (args.insecure or args.cacert) and not target.secure:
        print("error: --insecure and --cacert only apply to wss:// URLs", file=sys.stderr)
        return EXIT_USAGE
    ssl_context: ssl.SSLContext | None = None
    if target.secure:
        try:
            ssl_context = _client_ssl_context(args.cacert, args.insecure)
        except (OSError, ssl.SSLError) as exc:
            print(f"error: cannot load --cacert {args.cacert}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if args.resume and not args.listen:
        print("error: --resume needs --listen", file=sys.stderr)
        return EXIT_USAGE
    texts: list[str] = getattr(args, "messages", None) or [DEFAULT_MESSAGE]
    for name, _ in args.header:
        if name.lower() in _HANDSHAKE_HEADERS:
            print(
                f"error: -H cannot set {name}: the client sets it for the WebSocket handshake"
                + (" (use --subprotocol)" if name.lower() == "sec-websocket-protocol" else ""),
                file=sys.stderr,
            )
            return EXIT_USAGE
    if "-" in texts and len(texts) > 1:
        print("error: '-' (read stdin) cannot be combined with other messages", file=sys.stderr)
        return EXIT_USAGE
    if texts == ["-"] and args.count != 1:
        print("error: --count does not apply to '-' (stdin is read once)", file=sys.stderr)
        return EXIT_USAGE
    token = _token(args)
    if (
        token
        and not target.secure
        and not _is_loopback(target.host)
        and not args.allow_insecure_token
    ):
        print(
            f"error: not sending the token to {target.host} over plain ws:// (anyone on the way "
            "could read it); use wss://, or --allow-insecure-token if you must",
            file=sys.stderr,
        )
        return EXIT_USAGE

    interactive = args.interactive or (args.listen and texts == ["-"])
    printer = _Printer(
        sys.stdout,
        raw=args.json,
        envelopes=args.json or args.resume,
        interactive=interactive,
        binary=args.binary_output,
    )
    try:
        if interactive:
            result = trio.run(_run_interactive, args, ssl_context, printer)
        else:
            result = trio.run(_run_echo, args, ssl_context, texts, printer)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    if printer.output_closed:
        return EXIT_OK  # `echo ... | head`: the reader has what it wanted
    if (
        isinstance(result, EchoResult)
        and result.interrupted
        and (result.missing or result.close_code is None)
    ):
        # Ctrl-C before the handshake finished, or before every echo came back: the
        # echoes did not time out, the user stopped waiting.
        print("Interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if result is None:
        print("Interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if isinstance(result, ClientError):
        print(f"Connection error: {result}", file=sys.stderr)
        return EXIT_FAILURE
    status = EXIT_OK
    for message in result.missing:
        print(f"No echo for {escape(message)} within {args.timeout:g} s", file=sys.stderr)
        status = EXIT_FAILURE
    if result.closed_by_server and result.close_code != 1000:
        reason = f" ({escape(result.close_reason)})" if result.close_reason else ""
        print(
            f"Connection error: the server closed the connection with code "
            f"{result.close_code}{reason}",
            file=sys.stderr,
        )
        status = EXIT_FAILURE
    return status


async def _run_echo(
    args: argparse.Namespace,
    ssl_context: ssl.SSLContext | None,
    texts: list[str],
    printer: _Printer,
) -> EchoResult | ClientError | None:
    """Send *texts* and wait for their echoes (or listen) until done or interrupted."""
    messages = _messages(texts, args.count, args.binary)
    return await _until_interrupted(
        lambda stop: run_client(
            args.url,
            messages,
            timeout=args.timeout,
            interval=args.interval,
            listen=args.listen,
            ssl_context=ssl_context,
            headers=[*args.header, *_token_header(_token(args))],
            subprotocols=args.subprotocol,
            on_event=printer.report,
            stop=stop,
            envelopes=args.json,
            resume=args.resume,
        ),
        printer,
    )


async def _run_interactive(
    args: argparse.Namespace,
    ssl_context: ssl.SSLContext | None,
    printer: _Printer,
) -> EchoResult | ClientError | None:
    """A wscat-like session on stdin."""

    async def lines() -> AsyncIterator[str]:
        while True:
            # A thread reads stdin, so stdout stays blocking (see trio's FdStream).
            line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
            if not line:
                return
            yield line.rstrip("\r\n")

    return await _until_interrupted(
        lambda stop: run_interactive(
            args.url,
            lines(),
            timeout=args.timeout,
            ssl_context=ssl_context,
            headers=[*args.header, *_token_header(_token(args))],
            subprotocols=args.subprotocol,
            on_event=printer.report,
            stop=stop,
        ),
        printer,
    )


async def _until_interrupted(
    run: Callable[[trio.Event], Awaitable[EchoResult]], printer: _Printer
) -> EchoResult | ClientError | None:
    """Run a client; the first Ctrl-C or SIGTERM, or stdout closing, sets its stop event
    (it closes with 1000); a second signal stops at once (None). A ClientError is
    returned, not raised."""
    result: EchoResult | ClientError | None = None
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            stop = trio.Event()
            printer.on_output_closed = stop.set

            async def stop_on_signal() -> None:
                async for _ in signals:
                    if stop.is_set():
                        nursery.cancel_scope.cancel()
                    stop.set()

            nursery.start_soon(stop_on_signal)
            try:
                result = await run(stop)
            except ClientError as exc:
                result = exc
            finally:
                nursery.cancel_scope.cancel()
    return result


async def _messages(texts: list[str], count: int, binary: bool) -> AsyncIterator[Message]:
    def encode(text: str) -> Message:
        return text.encode("utf-8") if binary else text

    if texts == ["-"]:
        async for line in _stdin_lines():
            yield encode(line)
        return
    for _ in range(count):
        for text in texts:
            yield encode(text)


async def _stdin_lines() -> AsyncIterator[str]:
    """Read stdin line by line without a thread (trio's FdStream)."""
    stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    buffer = b""
    async with stream:
        while True:
            chunk = await stream.receive_some()
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                yield line.rstrip(b"\r").decode("utf-8", "replace")
    if buffer:
        yield buffer.decode("utf-8", "replace")


#: Headers the WebSocket handshake itself sets; -H may not override them.
_HANDSHAKE_HEADERS = frozenset(
    {
        "host",
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-accept",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
    }
)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _token(args: argparse.Namespace) -> str | None:
    """--token, else $TRIO_WS_DEMO_TOKEN (read here, so that --help never shows it)."""
    return getattr(args, "token", None) or os.environ.get(TOKEN_ENV) or None


def _token_header(token: str | None) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token}")] if token else []


def _client_ssl_context(cacert: str | None, insecure: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=cacert)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _Printer:
    """Prints client events the way the article's ``client.js`` does."""

    def __init__(
        self,
        out: TextIO,
        *,
        raw: bool = False,
        envelopes: bool = False,
        interactive: bool = False,
        binary: str = "repr",
    ) -> None:
        self._out = out
        self._binary = binary
        self._interactive = interactive
        self._raw = raw
        """Print frames as they came (--json: one JSON object per line)."""
        self._envelopes = envelopes
        """Frames are trio-ws-demo.v1 JSON: show the message inside."""
        self.output_closed = False
        """Whoever read our stdout has gone (``| head``)."""
        self.on_output_closed: Callable[[], None] | None = None

    def report(self, event: Event) -> None:
        if isinstance(event, Opened):
            line = "Connection opened"
        elif isinstance(event, Sent):
            line = f"Client sends: {escape(event.message, self._binary)}"
        elif isinstance(event, Received):
            if self._raw:
                line = escape(event.message, self._binary)
            elif not self._envelopes:
                line = f"Server sent:  {escape(event.message, self._binary)}"
            else:
                shown = _envelope_text(event.message)
                if shown is None:
                    return  # a joined or resume frame: said by other lines
                line = f"Server sent:  {escape(shown, self._binary)}"
        elif isinstance(event, Closed):
            line = "Connection closed"
            if self._interactive and event.by_server:
                why = f" {escape(event.reason)}" if event.reason else ""
                line += f" ({event.code}{why})"
        elif isinstance(event, Ponged):
            line = f"Pong after {event.seconds * 1000:.1f} ms"
        elif isinstance(event, Notice):
            line = f"! {event.text}"
        elif isinstance(event, Reconnecting):
            line = f"Connection lost ({event.why}); reconnecting in {event.delay:g} s"
        elif isinstance(event, Resumed):
            if event.recovered:
                line = "Reconnected, nothing missed"
            elif event.missing is not None:
                line = f"Reconnected, {event.missing} messages may be missing"
            else:
                line = "Reconnected, the server's history was lost: messages may be missing"
        if self.output_closed:
            return
        try:
            print(line, file=self._out, flush=True)
        except BrokenPipeError:
            # Nobody reads any more: stop quietly, and keep Python's own flush at
            # exit from complaining about the closed pipe.
            self.output_closed = True
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._out.fileno())
            if self.on_output_closed is not None:
                self.on_output_closed()


def _envelope_text(frame: Message) -> Message | None:
    """The message inside a trio-ws-demo.v1 envelope, or None for other frames."""
    try:
        data = json.loads(frame)
    except ValueError:
        return frame
    if not isinstance(data, dict) or data.get("type") != "message":
        return None if isinstance(data, dict) else frame
    if "text" in data:
        return str(data["text"])
    return base64.b64decode(str(data.get("base64", "")))
