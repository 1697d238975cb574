"""``trio-ws-demo echo``: its flags, the checks that make a usage error, and running
the client (once, listening, or interactively) until done or interrupted."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import re
import signal
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import trio

from ..client import (
    DEFAULT_MESSAGE,
    DEFAULT_URL,
    ClientError,
    EchoResult,
    Message,
    Target,
    parse_url,
    run_client,
    run_interactive,
)
from ..client.session import TRUST_HINT
from .editor import LineEditor
from .flags import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    TOKEN_ENV,
    TOKEN_HOSTS_ENV,
    HelpFormatter,
    header,
    non_negative_float,
    non_negative_int,
    positive_float,
    read_token,
)
from .output import Printer, close_error, escape

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``echo`` and its flags to *commands* (an argparse subparsers action)."""
    echo: argparse.ArgumentParser = commands.add_parser(
        "echo",
        help="send messages to a WebSocket server and print the echoes",
        description="Connect, send each MESSAGE, print what comes back, close with 1000. "
        "Exit status: 0 when every message came back, 1 otherwise, 2 for usage errors.",
        formatter_class=HelpFormatter,
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
        type=positive_float,
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
        choices=["repr", "hex", "base64", "raw"],
        default="repr",
        help="how a binary message prints: a Python bytes literal, hex, base64, or raw "
        "(its bytes exactly, nothing added; not to a terminal)",
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
        help="print each event as one JSON object per line on stdout, for scripts; its "
        '"event" is opened, sent, message (text, or base64 for binary), closed, pong '
        "(/ping), notice, reconnecting (--resume), ping and pong (--show-ping); offers the "
        "server's trio-ws-demo.v1 subprotocol, whose frames add joined, resume, join, leave, "
        "changes (presence), backplane and error, and room, offset and time to messages",
    )
    echo.add_argument(
        "--resume",
        action="store_true",
        help="with --listen or -i: when the server goes away, reconnect with backoff and get what "
        "was missed (trio-ws-demo.v1 offsets); says so when something may be missing",
    )
    echo.add_argument(
        "--count",
        type=non_negative_int,
        default=1,
        metavar="N",
        help="send the messages N times (0: send nothing, useful with --listen)",
    )
    echo.add_argument(
        "--interval",
        type=non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="pause between messages",
    )
    echo.add_argument("--binary", action="store_true", help="send binary frames instead of text")
    echo.add_argument(
        "--show-ping",
        action="store_true",
        help="print the server's pings and pongs as they arrive (they are answered anyway)",
    )
    echo.add_argument(
        "--file",
        metavar="PATH",
        help="send this file as one message, byte for byte (binary with --binary; "
        "else text, which must be UTF-8)",
    )
    echo.add_argument(
        "-H",
        "--header",
        type=header,
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
    return echo


#: host:port[/path]: what a URL without its scheme looks like.
_HOST_PORT = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}(?:/\S*)?")
#: A host alone: localhost, an IPv4 address, or a dotted name ending in letters.
_HOST = re.compile(
    r"localhost|[0-9]{1,3}(?:\.[0-9]{1,3}){3}|(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}",
    re.IGNORECASE,
)
#: A scheme with one slash or none (ws:/host, wss:host), or a web scheme.
_ALMOST = re.compile(r"(wss?|https?):/{0,1}(?!/)(\S+)|(https?)://(\S+)", re.IGNORECASE)


def _meant_url(text: str, more: bool) -> tuple[str, str] | None:
    """The URL *text* most likely meant, if it looks like a mistyped one: host:port
    or //host (no scheme), ws:/host (one slash), http://host, or a host alone followed
    by messages (``echo localhost hi``), and what is wrong with it; else None (a
    message, or a good URL)."""
    almost = _ALMOST.fullmatch(text)
    if almost:
        scheme, rest = (almost[1], almost[2]) if almost[1] else (almost[3], almost[4])
        secure = scheme.lower() in ("wss", "https")
        return f"{'wss' if secure else 'ws'}://{rest}", "is not a WebSocket URL"
    if "://" in text:
        return None
    bare = text[2:] if text.startswith("//") else text
    looks = _HOST_PORT.fullmatch(bare) or (
        _HOST.fullmatch(bare.split("/", 1)[0]) and (more or text.startswith("//"))
    )
    return (f"ws://{bare}", "has no scheme") if looks else None


def run(args: argparse.Namespace) -> int:
    meant = _meant_url(args.url, bool(getattr(args, "messages", None)))
    if meant is not None:
        print(f"error: {args.url!r} {meant[1]}: did you mean {meant[0]} ?", file=sys.stderr)
        return EXIT_USAGE
    if "://" not in args.url:
        # One rule: a URL has a scheme. `echo hello.` or `echo "note: disk full"` are
        # messages to the default URL; only what looks enough like a URL asks.
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
    if args.resume and not (args.listen or args.interactive):
        print("error: --resume needs --listen or -i", file=sys.stderr)
        return EXIT_USAGE
    texts: list[str] = getattr(args, "messages", None) or [DEFAULT_MESSAGE]
    file_message: Message | None = None
    if args.file is not None:
        if getattr(args, "messages", None):
            print("error: --file sends the file; give no other messages", file=sys.stderr)
            return EXIT_USAGE
        try:
            with open(args.file, "rb") as data:
                content = data.read()
        except OSError as exc:
            print(f"error: cannot read --file {args.file}: {exc.strerror}", file=sys.stderr)
            return EXIT_USAGE
        try:
            file_message = content if args.binary else content.decode("utf-8")
        except UnicodeDecodeError:
            print(f"error: {args.file} is not UTF-8 text: add --binary", file=sys.stderr)
            return EXIT_USAGE
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
    token = _token_for(target, args)
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

    headers = [*args.header, *_token_header(token)]
    interactive = args.interactive or (args.listen and texts == ["-"])
    first: list[str] = []
    if args.interactive:
        given = getattr(args, "messages", None) or []
        if "-" in given:
            print("error: -i reads the terminal; '-' (stdin) does not apply", file=sys.stderr)
            return EXIT_USAGE
        if args.count != 1 and not given:
            print("error: --count needs messages to send (with -i, before the prompt)",
                  file=sys.stderr)  # fmt: skip
            return EXIT_USAGE
        # Like wscat -x: the messages given go first (--count times), then the prompt.
        # A leading "/" is doubled so they are always sent as typed, never run as commands.
        first = ["/" + text if text.startswith("/") else text for text in given] * args.count
    if args.binary_output == "raw" and sys.stdout.isatty():
        print(
            "error: --binary-output raw would write binary messages to your terminal as they "
            "are; redirect stdout (> FILE or | PROGRAM), or use hex or base64",
            file=sys.stderr,
        )
        return EXIT_USAGE
    printer = Printer(
        sys.stdout,
        sys.stderr,
        json_lines=args.json,
        interactive=interactive,
        binary=args.binary_output,
        only_echoes=not (interactive or args.listen or args.json),
        show_ping=args.show_ping,
    )
    try:
        if interactive:
            result = trio.run(_run_interactive, args, ssl_context, headers, printer, first)
        else:
            result = trio.run(_run_echo, args, ssl_context, headers, texts, printer, file_message)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    printer.flush()
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
        # A refusal quotes the server's answer: escaped like everything remote.
        said = str(result)
        if args.cacert and said.endswith(TRUST_HINT):  # it was passed: not that advice
            said = said.removesuffix(TRUST_HINT) + f"{args.cacert} did not issue it"
        print(f"Connection error: {escape(said)}", file=sys.stderr)
        return EXIT_FAILURE
    if result.closed_by_server and result.close_code != 1000:
        # One reason for one event: the close says why echoes are missing.
        if result.close_code != 1006 and not printer.said_close:  # else it is said
            print(close_error(result.close_code, result.close_reason), file=sys.stderr)
        return EXIT_FAILURE
    status = EXIT_OK
    for message in result.missing:
        print(f"No echo for {escape(message)} within {args.timeout:g} s", file=sys.stderr)
        status = EXIT_FAILURE
    return status


async def _run_echo(
    args: argparse.Namespace,
    ssl_context: ssl.SSLContext | None,
    headers: list[tuple[str, str]],
    texts: list[str],
    printer: Printer,
    file_message: Message | None = None,
) -> EchoResult | ClientError | None:
    """Send *texts* (or the file's one message) and wait for their echoes (or listen)
    until done or interrupted."""
    messages: AsyncIterator[Message] | list[Message] = (
        [file_message] * args.count
        if file_message is not None
        else _messages(texts, args.count, args.binary)
    )
    return await _until_interrupted(
        lambda stop: run_client(
            args.url,
            messages,
            timeout=args.timeout,
            interval=args.interval,
            listen=args.listen,
            ssl_context=ssl_context,
            headers=headers,
            subprotocols=args.subprotocol,
            on_event=printer.report,
            stop=stop,
            # A send-and-check offers v1 too: its echo is then recognised by
            # its ack's offset, so a history copy of the same text never passes.
            envelopes=args.json or not args.listen,
            resume=args.resume,
        ),
        printer,
    )


async def _run_interactive(
    args: argparse.Namespace,
    ssl_context: ssl.SSLContext | None,
    headers: list[tuple[str, str]],
    printer: Printer,
    first: list[str],
) -> EchoResult | ClientError | None:
    """A wscat-like session on stdin, after the *first* lines. On a terminal, lines
    are read by :class:`LineEditor`: editing, Up/Down through the history (kept
    between runs), Ctrl-R to search it; the terminal's mode is put back however
    the session ends."""
    editor = LineEditor.for_terminal()
    printer.editor = editor

    async def lines() -> AsyncIterator[str]:
        for line in first:
            yield line
        while True:
            if editor is not None:
                typed = await editor.read()
                if typed is None:
                    return
                yield typed
                continue
            # A thread reads stdin, so stdout stays blocking (see trio's FdStream).
            line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
            if not line:
                return
            yield line.rstrip("\r\n")

    async with editor.terminal() if editor is not None else contextlib.nullcontext():
        return await _until_interrupted(
            lambda stop: run_interactive(
                args.url,
                lines(),
                timeout=args.timeout,
                ssl_context=ssl_context,
                headers=headers,
                subprotocols=args.subprotocol,
                on_event=printer.report,
                stop=stop,
                resume=args.resume,
            ),
            printer,
        )


async def _until_interrupted(
    run: Callable[[trio.Event], Awaitable[EchoResult]], printer: Printer
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
        async for raw in _stdin_lines():
            # Binary: the line's bytes exactly (no decoding); text: UTF-8, as typed.
            yield raw if binary else raw.rstrip(b"\r").decode("utf-8", "replace")
        return
    for _ in range(count):
        for text in texts:
            yield encode(text)


async def _stdin_lines() -> AsyncIterator[bytes]:
    """Read stdin line by line without a thread (trio's FdStream); each line's
    bytes, without its line end."""
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
                yield line
    if buffer:
        yield buffer


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


def _token_for(target: Target, args: argparse.Namespace) -> str | None:
    """The token to send to *target*: ``--token`` (given for this URL), or the one in
    $TRIO_WS_DEMO_TOKEN if *target*'s host may have it: a host listed in
    $TRIO_WS_DEMO_TOKEN_HOSTS, or this machine when that is unset. An ambient secret
    must not follow the user to every server they try."""
    given: str | None = getattr(args, "token", None)
    if given:
        return given
    token = read_token(args)
    if not token:
        return None
    hosts = os.environ.get(TOKEN_HOSTS_ENV)
    if hosts is None:
        allowed = _is_loopback(target.host)
    else:
        allowed = any(_names(target, entry.strip()) for entry in hosts.split(","))
    if not allowed:
        where = (
            f"the hosts in ${TOKEN_HOSTS_ENV}"
            if hosts is not None
            else f"this machine unless ${TOKEN_HOSTS_ENV} lists others"
        )
        print(
            f"note: not sending ${TOKEN_ENV} to {target.host}: it goes only to {where}; "
            "use --token to send a token to this host",
            file=sys.stderr,
        )
        return None
    return token


def _names(target: Target, entry: str) -> bool:
    """Does a $TRIO_WS_DEMO_TOKEN_HOSTS entry (``host`` or ``host:port``) name *target*?"""
    if not entry:
        return False
    host, port = entry, None
    if entry.startswith("["):  # [::1]:8080
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    elif entry.count(":") == 1:
        host, _, port = entry.partition(":")
    if host.lower() != target.host.lower():
        return False
    return port is None or port == str(target.port)


def _token_header(token: str | None) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token}")] if token else []


def _client_ssl_context(cacert: str | None, insecure: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=cacert)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
