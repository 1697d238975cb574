"""The echo client, as a library: connect, send, wait for each echo, close.

:func:`run_client` never prints. It reports what happens as it happens through
an optional ``on_event`` callback (the CLI prints from there) and returns an
:class:`EchoResult` with everything it saw. Failures to connect or to keep the
connection raise :class:`ClientError`, whose message is one line meant for a
person (for example ``connection refused (127.0.0.1:8080)``).
"""

from __future__ import annotations

import errno
import importlib
import math
import socket
import ssl
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable
from contextlib import aclosing
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import trio

from ..envelopes import (
    GREETINGS,
    SUBPROTOCOL,
    BackplaneFrame,
    ErrorFrame,
    Frame,
    JoinedFrame,
    MessageFrame,
    PresenceFrame,
    ResumeFrame,
    carries,
    decode,
)
from ..errors import ClientError
from ..frames import FrameScanner
from ..http import format_host


class _LazyModule:
    """A module imported on first use: ``serve`` never needs trio-websocket (the
    client's engine), so a server process does not load it."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attribute)


if TYPE_CHECKING:
    import trio_websocket as tw
    from trio_websocket import WebSocketConnection
else:
    tw = _LazyModule("trio_websocket")

__all__ = [
    "DEFAULT_MESSAGE",
    "DEFAULT_URL",
    "Closed",
    "ControlFrame",
    "EchoResult",
    "Event",
    "Message",
    "Notice",
    "Opened",
    "Ponged",
    "Presence",
    "Received",
    "Reconnecting",
    "Resumed",
    "Sent",
    "Target",
    "parse_url",
    "run_client",
    "run_interactive",
]

DEFAULT_URL = "ws://127.0.0.1:8080"
DEFAULT_MESSAGE = "Hello, WebSocket!"

Message = str | bytes


# -- events reported while the client runs (frozen, like wsproto's) ------------


@dataclass(frozen=True)
class Opened:
    url: str
    subprotocol: str | None


@dataclass(frozen=True)
class Sent:
    message: Message


@dataclass(frozen=True)
class Received:
    message: Message


@dataclass(frozen=True)
class Closed:
    code: int | None
    reason: str | None
    by_server: bool


@dataclass(frozen=True)
class Resumed:
    """After a reconnect: did the server still have everything we missed?"""

    recovered: bool
    missing: int | None
    """How many messages may be missing, when the offsets tell."""
    keeps_history: bool = True
    """False when the server keeps no history at all (``serve --history 0``)."""


@dataclass(frozen=True)
class Ponged:
    """The answer to ``/ping`` in an interactive session."""

    seconds: float


@dataclass(frozen=True)
class Notice:
    """Something an interactive session tells its user (a bad command, say)."""

    text: str


@dataclass(frozen=True)
class Presence(Notice):
    """Who came or went (a ``presence`` frame): shown in an interactive session."""


@dataclass(frozen=True)
class Reconnecting:
    delay: float
    why: str


@dataclass(frozen=True)
class ControlFrame:
    """A ping or pong from the server (reported for ``--show-ping``; trio-websocket
    answers pings itself)."""

    kind: str
    payload: bytes


Event = Opened | Sent | Received | Closed | Resumed | Reconnecting | Ponged | Notice | ControlFrame

_BACKOFF_FIRST, _BACKOFF_MAX = 0.5, 10.0


@dataclass
class _Position:
    """Where a client is in its room's stream, for resuming."""

    offset: int | None = None
    epoch: str | None = None
    speaks_v1: bool | None = None
    """Whether this connection's server speaks trio-ws-demo.v1, from its first frame
    (``joined`` or ``resume``): a server that merely accepts the first subprotocol
    offered (Node ``ws`` does) sends plain messages. None until that frame."""

    def query(self) -> str:
        if self.offset is None or self.epoch is None:
            return ""
        return urllib.parse.urlencode({"since": self.offset, "epoch": self.epoch})

    def read(self, frame: Message, report: Callable[[Event], None]) -> Frame | None:
        """Note the offset or epoch a v1 frame carries; return the frame decoded
        (None for a frame that is not an envelope, or a server that sends none)."""
        if self.speaks_v1 is False:
            return None
        data = decode(frame)
        if self.speaks_v1 is None:
            self.speaks_v1 = data is not None and data.kind in GREETINGS
        if data is None or not self.speaks_v1:
            return None
        if isinstance(data, JoinedFrame):
            # The history that follows ends at "offset".
            self.epoch = data.epoch
            self.offset = data.start
        elif isinstance(data, ResumeFrame):
            recovered = data.recovered
            same_epoch = data.epoch == self.epoch
            missing = None
            if not recovered and same_epoch and self.offset is not None:
                missing = max(0, data.offset - self.offset)
            report(Resumed(recovered, missing, keeps_history=data.keeps_history))
            if not same_epoch:  # a new history: its messages follow from its start
                self.epoch = data.epoch
                self.offset = 0
        elif isinstance(data, BackplaneFrame):
            # The server lost (or got back) its link to the other servers: its
            # offsets are now in another epoch.
            self.epoch = data.epoch
            self.offset = data.offset
            if not data.up:
                text = (
                    "the server lost its link to the other servers: messages from "
                    "their clients may be missing"
                )
            elif data.recovered is False:
                text = (
                    "the server is connected to the other servers again; "
                    "messages sent meanwhile may be missing"
                )
            else:
                text = "the server is connected to the other servers again"
            report(Notice(text))
        elif isinstance(data, PresenceFrame):
            report(Presence(_presence_text(data)))
        elif isinstance(data, ErrorFrame):
            # About something this client did, e.g. a message Redis refused.
            report(Notice(data.reason))
        elif isinstance(data, MessageFrame):
            self.offset = data.offset
        return data


def _presence_text(data: PresenceFrame) -> str:
    """ "alice joined (2 here)", "3 joined, 1 left (5 here)" for a presence frame."""
    joined, left = data.joined, data.left
    here = f"({data.clients} here)"
    if len(joined) + len(left) == 1:
        return f"{(joined or left)[0]} {'joined' if joined else 'left'} {here}"
    parts = [
        f"{len(names)} {verb}" for names, verb in ((joined, "joined"), (left, "left")) if names
    ]
    return f"{', '.join(parts) or 'presence changed'} {here}"


@dataclass
class EchoResult:
    """Everything one client run saw."""

    sent: list[Message] = field(default_factory=list)
    received: list[Message] = field(default_factory=list)
    missing: list[Message] = field(default_factory=list)
    """Messages whose echo did not arrive within the timeout."""
    close_code: int | None = None
    close_reason: str | None = None
    closed_by_server: bool = False
    interrupted: bool = False
    """The caller's *stop* ended the run (before the handshake finished, or before
    every echo came back)."""

    @property
    def ok(self) -> bool:
        """True when every sent message came back."""
        return not self.missing


@dataclass(frozen=True)
class Target:
    """A parsed ``ws://`` or ``wss://`` URL."""

    url: str
    host: str
    port: int
    resource: str
    secure: bool

    @property
    def host_header(self) -> str:
        host = format_host(self.host)
        default = 443 if self.secure else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_url(url: str) -> Target:
    """Check and split a WebSocket URL; raise :class:`ValueError` saying what is wrong."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid URL {url!r}: {exc}") from None
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"invalid URL {url!r}: it must start with ws:// or wss://")
    if not parts.hostname:
        raise ValueError(f"invalid URL {url!r}: it has no host")
    secure = parts.scheme == "wss"
    resource = parts.path or "/"
    if parts.query:
        resource += "?" + parts.query
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in resource):
        raise ValueError(
            f"invalid URL {url!r}: a space or control character in the path; write it as %20"
        )
    # Non-ASCII (café) goes on the wire percent-encoded as UTF-8, as a browser does;
    # what is already ASCII, %-escapes included, is left as it is.
    resource = urllib.parse.quote(resource, safe="".join(map(chr, range(0x21, 0x7F))))
    return Target(
        url=url,
        host=parts.hostname,
        port=port if port is not None else (443 if secure else 80),
        resource=resource,
        secure=secure,
    )


async def _iterate(
    messages: Iterable[Message] | AsyncIterable[Message],
) -> AsyncGenerator[Message, None]:
    if isinstance(messages, AsyncIterable):
        async for message in messages:
            yield message
    else:
        for message in messages:
            yield message


async def run_client(
    url: str,
    messages: Iterable[Message] | AsyncIterable[Message] = (DEFAULT_MESSAGE,),
    *,
    timeout: float = 5.0,
    interval: float = 0.0,
    listen: bool = False,
    ssl_context: ssl.SSLContext | None = None,
    headers: Iterable[tuple[str, str]] = (),
    subprotocols: Iterable[str] = (),
    on_event: Callable[[Event], None] | None = None,
    stop: trio.Event | None = None,
    envelopes: bool = False,
    resume: bool = False,
) -> EchoResult:
    """Connect to *url*, send each message and wait for its echo, then close with 1000.

    Between sends it waits *interval* seconds. Each echo is awaited for up to
    *timeout* seconds; a missing echo is recorded in ``EchoResult.missing`` and
    the client moves on. With *listen*, after sending it stays connected and
    reports every message until the server closes or *stop* is set. Setting
    *stop* at any time ends the conversation early and closes normally.

    With *envelopes* it offers our ``trio-ws-demo.v1`` subprotocol: every frame
    is a JSON object, and echoes are recognised inside message envelopes. With
    *resume* (which implies both *envelopes* and *listen*) it reconnects, with
    backoff up to 10 s, whenever the connection ends other than by *stop*, and
    asks the server for what it missed (``?since=OFFSET&epoch=EPOCH``); a
    :class:`Resumed` event says whether everything was recovered.
    """
    report = on_event or (lambda event: None)
    if not resume:
        return await _run_once(
            url, messages, timeout, interval, listen, ssl_context, headers,
            [*subprotocols, *([SUBPROTOCOL] if envelopes else [])], report, stop,
            _Position() if envelopes else None,
        )  # fmt: skip
    first = [messages]

    def session(at: str, position: _Position) -> Awaitable[EchoResult]:
        sending, first[:] = first[0], [()]  # sent once; a reconnect only listens
        return _run_once(
            at, sending, timeout, interval, True, ssl_context, headers,
            [*subprotocols, SUBPROTOCOL], report, stop, position,
        )  # fmt: skip

    return await _resuming(url, session, report, stop)


async def _resuming(
    url: str,
    session: Callable[[str, _Position], Awaitable[EchoResult]],
    report: Callable[[Event], None],
    stop: trio.Event | None,
) -> EchoResult:
    """Run *session* again whenever the server goes away, with backoff (0.5 s doubling
    to 10 s), at the URL that asks for what was missed (``?since=N&epoch=E``)."""
    position = _Position()
    delay = _BACKOFF_FIRST
    while True:
        separator = "&" if urllib.parse.urlsplit(url).query else "?"
        query = position.query()
        try:
            result = await session(f"{url}{separator}{query}" if query else url, position)
        except ClientError as exc:
            if position.epoch is None:
                raise  # never connected: nothing to resume
            why = str(exc)
        else:
            if (stop is not None and stop.is_set()) or not result.closed_by_server:
                return result
            delay = _BACKOFF_FIRST
            why = f"the server closed the connection with code {result.close_code}"
        report(Reconnecting(delay, why))
        with trio.move_on_after(delay):
            if stop is not None:
                await stop.wait()  # Ctrl-C ends the wait
            else:
                await trio.sleep_forever()
        if stop is not None and stop.is_set():
            return EchoResult(close_code=1000)
        delay = min(delay * 2, _BACKOFF_MAX)


async def _run_once(
    url: str,
    messages: Iterable[Message] | AsyncIterable[Message],
    timeout: float,
    interval: float,
    listen: bool,
    ssl_context: ssl.SSLContext | None,
    headers: Iterable[tuple[str, str]],
    subprotocols: list[str],
    report: Callable[[Event], None],
    stop: trio.Event | None,
    position: _Position | None,
) -> EchoResult:
    async def talk(
        ws: WebSocketConnection, result: EchoResult, conversation: trio.Nursery
    ) -> tuple[int, str | None]:
        reading = position
        if ws.subprotocol != SUBPROTOCOL:
            reading = None  # the server did not take it: frames are plain messages
        elif reading is None:
            reading = _Position()  # offered with --subprotocol: read envelopes too
        if reading is not None:
            reading.speaks_v1 = None  # this server's first frame will tell
        await _converse(ws, messages, result, report, timeout, interval, listen, reading)
        return 1000, None

    return await _session(url, timeout, ssl_context, headers, subprotocols, report, stop, talk)


async def _session(
    url: str,
    timeout: float,
    ssl_context: ssl.SSLContext | None,
    headers: Iterable[tuple[str, str]],
    subprotocols: list[str],
    report: Callable[[Event], None],
    stop: trio.Event | None,
    talk: Callable[
        [WebSocketConnection, EchoResult, trio.Nursery], Awaitable[tuple[int, str | None]]
    ],
) -> EchoResult:
    """One connection: open it, shake hands, *talk* (in a nursery that *stop* cancels),
    then close with the code *talk* returned, unless the server closed first. Reports
    Opened and Closed; any failure becomes one :class:`ClientError`."""
    target = parse_url(url)
    result = EchoResult()
    stream = await _open_stream(target, ssl_context, timeout)
    try:
        async with trio.open_nursery() as nursery:
            ws = await _handshake(
                nursery, stream, target, subprotocols, headers, timeout, stop, report
            )
            if ws is None:
                result.interrupted = True
                nursery.cancel_scope.cancel()
                return result
            report(Opened(url, ws.subprotocol))
            close: tuple[int, str | None] = (1000, None)
            async with trio.open_nursery() as conversation:
                if stop is not None:
                    conversation.start_soon(_cancel_when_set, stop, conversation.cancel_scope)
                close = await talk(ws, result, conversation)
                conversation.cancel_scope.cancel()
            result.interrupted = stop is not None and stop.is_set()
            if not result.closed_by_server:
                code, reason = close
                with trio.move_on_after(timeout):
                    await ws.aclose(code, reason)
                result.close_code, result.close_reason = code, reason
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise _client_error(group, target, timeout) from None
    finally:
        # trio-websocket leaves the socket open when the server closes first.
        await trio.aclose_forcefully(stream)
    report(Closed(result.close_code, result.close_reason, result.closed_by_server))
    return result


async def run_interactive(
    url: str,
    lines: AsyncIterable[str],
    *,
    timeout: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
    headers: Iterable[tuple[str, str]] = (),
    subprotocols: Iterable[str] = (),
    on_event: Callable[[Event], None] | None = None,
    stop: trio.Event | None = None,
    resume: bool = False,
) -> EchoResult:
    """A session like wscat's: every line of *lines* is sent, every message is reported
    the moment it arrives, and the server's pings are answered while *lines* is idle.

    Lines starting with ``/`` are commands: ``/ping`` (reports the round trip),
    ``/close [code [reason]]``, ``/binary HEX``; ``//text`` sends ``/text``. The
    session ends when *lines* ends or *stop* is set (close 1000), on ``/close``,
    or as soon as the server closes; with *resume*, a server that goes away is
    reconnected to with backoff (as :func:`run_client` does), asking for what was
    missed, and lines typed meanwhile are sent once it is back.
    """
    report = on_event or (lambda event: None)
    if not resume:
        return await _interactive_once(
            url, lines, timeout, ssl_context, headers, list(subprotocols), report, stop, None
        )
    send, receive = trio.open_memory_channel[str](math.inf)

    async def pump() -> None:  # one reader of *lines* for every session: none is lost
        async with send:
            async for line in lines:
                send.send_nowait(line)

    def session(at: str, position: _Position) -> Awaitable[EchoResult]:
        return _interactive_once(
            at, receive, timeout, ssl_context, headers, [*subprotocols, SUBPROTOCOL],
            report, stop, position,
        )  # fmt: skip

    error: ClientError | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump)
        try:
            result = await _resuming(url, session, report, stop)
        except ClientError as exc:  # raised here, not as a group out of the nursery
            error = exc
        nursery.cancel_scope.cancel()
    if error is not None:
        raise error
    return result


async def _interactive_once(
    url: str,
    lines: AsyncIterable[str],
    timeout: float,
    ssl_context: ssl.SSLContext | None,
    headers: Iterable[tuple[str, str]],
    subprotocols: list[str],
    report: Callable[[Event], None],
    stop: trio.Event | None,
    position: _Position | None,
) -> EchoResult:
    async def talk(
        ws: WebSocketConnection, result: EchoResult, conversation: trio.Nursery
    ) -> tuple[int, str | None]:
        if position is not None:
            position.speaks_v1 = None if ws.subprotocol == SUBPROTOCOL else False
        conversation.start_soon(
            _print_incoming, ws, result, report, conversation.cancel_scope, position
        )
        return await _send_lines(ws, lines, result, report, timeout)

    return await _session(url, timeout, ssl_context, headers, subprotocols, report, stop, talk)


async def _print_incoming(
    ws: WebSocketConnection,
    result: EchoResult,
    report: Callable[[Event], None],
    session: trio.CancelScope,
    position: _Position | None = None,
) -> None:
    """Report messages as they arrive; end the session when the server closes."""
    try:
        while True:
            message = await ws.get_message()
            result.received.append(message)
            report(Received(message))
            if position is not None:
                position.read(message, report)
    except tw.ConnectionClosed as exc:
        result.closed_by_server = True
        result.close_code = exc.reason.code if exc.reason else None
        result.close_reason = exc.reason.reason if exc.reason else None
        session.cancel()


async def _send_lines(
    ws: WebSocketConnection,
    lines: AsyncIterable[str],
    result: EchoResult,
    report: Callable[[Event], None],
    timeout: float,
) -> tuple[int, str | None]:
    """Send each line (or run it as a command); return the close code and reason to use."""
    async for line in lines:
        message: Message = line
        if line.startswith("//"):
            message = line[1:]
        elif line.startswith("/"):
            command, _, rest = line.partition(" ")
            if command == "/ping":
                started = trio.current_time()
                with trio.move_on_after(timeout) as waiting:
                    await ws.ping()
                if waiting.cancelled_caught:
                    report(Notice(f"no pong within {timeout:g} s"))
                else:
                    report(Ponged(trio.current_time() - started))
                continue
            if command == "/close":
                code_text, _, reason = rest.strip().partition(" ")
                try:
                    code = int(code_text) if code_text else 1000
                except ValueError:
                    code = -1
                if not _sendable_close_code(code):
                    report(
                        Notice(
                            f"not a close code to send: {code_text!r} (use 1000, 1001, "
                            "1002, 1003, 1007 to 1014, or 3000 to 4999)"
                        )
                    )
                    continue
                if len(reason.encode()) > 123:
                    report(Notice("a close reason has at most 123 bytes (UTF-8)"))
                    continue
                return code, reason or None
            if command == "/binary":
                try:
                    message = bytes.fromhex(rest)
                except ValueError:
                    report(Notice("/binary takes hex digits, for example /binary 00ff10"))
                    continue
            else:
                report(Notice(f"unknown command {command}; try /ping, /close, /binary, //text"))
                continue
        try:
            await ws.send_message(message)
        except tw.ConnectionClosed:
            break  # the reader reports how the server closed
        result.sent.append(message)
        report(Sent(message))
    return 1000, None


def _sendable_close_code(code: int) -> bool:
    """RFC 6455 §7.4: what an endpoint may put in its own Close frame (1005,
    1006 and 1015 are for reporting only; 0-999 and 1016-2999 are not codes)."""
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


_PING_PONG = frozenset({0x9, 0xA})


class _ControlFrames:
    """Spots the server's pings and pongs in what it sends (frames from a server are
    never masked, so their headers can be read in passing): after the HTTP answer,
    each frame header is read and its payload skipped."""

    def __init__(self, report: Callable[[Event], None]) -> None:
        self._report = report
        self._head = bytearray()
        self._frames: FrameScanner | None = None

    def feed(self, data: bytes | bytearray) -> None:
        frames = self._frames
        if frames is None:  # the HTTP answer first
            head = self._head
            head += data
            end = head.find(b"\r\n\r\n")
            if end < 0:
                return
            frames = self._frames = FrameScanner(_PING_PONG, head[end + 4 :])
            self._head = bytearray()
        else:
            frames.feed(data)
        while (frame := frames.next_frame()) is not None:
            opcode, payload = frame
            self._report(ControlFrame("ping" if opcode == 0x9 else "pong", payload))


class _HangupWatch(trio.abc.Stream):
    """The client's stream as trio-websocket sees it, watching for the server hanging up.

    trio-websocket waits out its whole timeout when the server closes the
    connection before answering the handshake (say, plain ws:// to a TLS port);
    this tells the client at once. (A workaround worth reporting upstream:
    ``wrap_client_stream`` could fail when its reader ends first.)
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        on_hangup: Callable[[], None],
        on_control: Callable[[Event], None] | None = None,
    ) -> None:
        self.stream = stream
        self._on_hangup = on_hangup
        self._frames = _ControlFrames(on_control) if on_control is not None else None

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        try:
            data = await self.stream.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._on_hangup()
            raise
        if not data:
            self._on_hangup()
        elif self._frames is not None:
            self._frames.feed(data)
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.stream.aclose()


async def _handshake(
    nursery: trio.Nursery,
    stream: trio.abc.Stream,
    target: Target,
    subprotocols: list[str],
    headers: Iterable[tuple[str, str]],
    timeout: float,
    stop: trio.Event | None = None,
    on_control: Callable[[Event], None] | None = None,
) -> WebSocketConnection | None:
    """The opening handshake, within *timeout*; a hang-up before the answer fails at once.

    None if *stop* was set before it finished (the user gave up waiting).
    """
    with trio.fail_after(timeout), trio.CancelScope() as handshake:
        if stop is not None:
            nursery.start_soon(_cancel_when_set, stop, handshake)
        # (Cancelling the scope after the handshake does nothing: it has exited.)
        ws = await tw.wrap_client_stream(
            nursery,
            _HangupWatch(stream, handshake.cancel, on_control),  # type: ignore[arg-type]
            target.host_header,
            target.resource,
            subprotocols=subprotocols,
            extra_headers=[(name.encode(), value.encode()) for name, value in headers],
        )
        return ws
    if stop is not None and stop.is_set():
        return None
    raise ClientError(
        f"the server closed the connection during the WebSocket handshake ({target.url}"
        + ("; is it a wss:// server?)" if not target.secure else ")")
    )


async def _open_stream(
    target: Target, ssl_context: ssl.SSLContext | None, timeout: float
) -> trio.SocketStream | trio.SSLStream[trio.SocketStream]:
    """Open TCP (and TLS, handshake included) or raise :class:`ClientError`."""
    stream: trio.SocketStream | trio.SSLStream[trio.SocketStream] | None = None
    try:
        with trio.fail_after(timeout):
            tcp = await trio.open_tcp_stream(target.host, target.port)
            stream = tcp
            if target.secure:
                context = ssl_context or ssl.create_default_context()
                tls = trio.SSLStream(
                    tcp, context, server_hostname=target.host, https_compatible=True
                )
                stream = tls
                await tls.do_handshake()
            return stream
    except trio.TooSlowError:
        error = ClientError(f"timed out after {timeout:g} s connecting to {target.url}")
    except (OSError, trio.BrokenResourceError) as exc:
        error = ClientError(_describe_connect_failure(exc, target))
    if stream is not None:
        await trio.aclose_forcefully(stream)
    raise error


def _client_error(group: BaseExceptionGroup, target: Target, timeout: float) -> BaseException:
    """Turn what the connection's tasks raised into one :class:`ClientError`."""
    ours = group.subgroup(ClientError)
    if ours is not None:
        return _leaves(ours)[0]
    rejected = group.subgroup(tw.ConnectionRejected)
    if rejected is not None:
        return ClientError(_describe_refusal(_leaves(rejected)[0], target))  # type: ignore[arg-type]
    if group.subgroup(trio.TooSlowError) is not None:
        return ClientError(f"timed out after {timeout:g} s opening {target.url}")
    failures = group.subgroup((OSError, trio.BrokenResourceError, tw.HandshakeError))
    if failures is not None:
        return ClientError(_describe_connect_failure(_leaves(failures)[0], target))
    return group


def _describe_refusal(rejection: tw.ConnectionRejected, target: Target) -> str:
    """The HTTP status and, if the server said why, the first line of its answer."""
    status = rejection.status_code
    if 200 <= status < 300:
        return f"not a WebSocket endpoint (HTTP {status} from {target.url})"
    why = ""
    if rejection.body:
        first = rejection.body.decode("utf-8", "replace").strip().splitlines()[:1]
        # Our server's bodies start with the status again: "401 missing or wrong token".
        why = first[0].removeprefix(str(status)).strip()[:200] if first else ""
    return f"refused: HTTP {status}" + (f" {why}" if why else "") + f" ({target.url})"


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        leaves.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return leaves


async def _converse(
    ws: WebSocketConnection,
    messages: Iterable[Message] | AsyncIterable[Message],
    result: EchoResult,
    report: Callable[[Event], None],
    timeout: float,
    interval: float,
    listen: bool,
    position: _Position | None,
) -> None:
    try:
        await _send_and_listen(ws, messages, result, report, timeout, interval, listen, position)
    except tw.ConnectionClosed as exc:
        reason = exc.reason
        result.closed_by_server = True
        result.close_code = reason.code if reason else None
        result.close_reason = reason.reason if reason else None


async def _cancel_when_set(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def _send_and_listen(
    ws: WebSocketConnection,
    messages: Iterable[Message] | AsyncIterable[Message],
    result: EchoResult,
    report: Callable[[Event], None],
    timeout: float,
    interval: float,
    listen: bool,
    position: _Position | None,
) -> None:
    first = True
    async with aclosing(_iterate(messages)) as iterator:
        async for message in iterator:
            if not first and interval > 0:
                await trio.sleep(interval)
            first = False
            await ws.send_message(message)
            result.sent.append(message)
            report(Sent(message))
            # Counted as missing until its echo arrives, even if the server closes first.
            result.missing.append(message)
            if await _await_echo(ws, message, result, report, timeout, position):
                result.missing.pop()
    if listen:
        while True:
            received = await ws.get_message()
            result.received.append(received)
            report(Received(received))
            if position is not None:
                position.read(received, report)


async def _await_echo(
    ws: WebSocketConnection,
    message: Message,
    result: EchoResult,
    report: Callable[[Event], None],
    timeout: float,
    position: _Position | None,
) -> bool:
    """Report everything that arrives until *message* comes back; False on timeout."""
    with trio.move_on_after(timeout):
        while True:
            received = await ws.get_message()
            result.received.append(received)
            report(Received(received))
            data = position.read(received, report) if position is not None else None
            if position is None or not position.speaks_v1:
                if received == message:
                    return True
            elif carries(data, message):
                return True
    return False


#: What OpenSSL says when the answer to our ClientHello was not TLS at all
#: (an HTTP error page, say), or the peer hung up on it.
_NOT_TLS_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "UNEXPECTED_EOF_WHILE_READING", "RECORD_LAYER_FAILURE"}
)


def _describe_connect_failure(exc: BaseException, target: Target) -> str:
    where = f"{format_host(target.host)}:{target.port}"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, BaseExceptionGroup) and cause.exceptions:
            # trio.open_tcp_stream groups one error per address it tried.
            cause = cause.exceptions[0]
            continue
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve host {target.host!r} ({where})"
        if isinstance(cause, ssl.SSLCertVerificationError):
            return (
                f"TLS certificate verification failed for {where}: {cause.verify_message}; "
                "pass --cacert FILE or --insecure"
            )
        if isinstance(cause, ssl.SSLError):
            if cause.reason in _NOT_TLS_REASONS:
                return (
                    f"TLS handshake with {where} failed: the server did not answer in TLS; "
                    f"is it a plain ws:// server? try ws://{where}"
                )
            return f"TLS handshake with {where} failed: {cause.reason or cause}"
        if isinstance(cause, OSError):
            if cause.errno == errno.ECONNREFUSED:
                return f"connection refused ({where})"
            if cause.errno in (errno.ECONNRESET, errno.EPIPE):
                return f"connection reset by the server ({where})"
            if cause.strerror:
                return f"{cause.strerror.lower()} ({where})"
        cause = cause.__cause__ or cause.__context__
    return f"{exc or type(exc).__name__} ({where})"
