"""One connection of the client, on trio-websocket: open it, shake hands, talk, close.

:func:`run_session` opens TCP (and TLS), does the opening handshake while
watching for the server hanging up on it, lets its caller *talk*, and closes
with the code the talk chose unless the server closed first. Every failure on
the way becomes one :class:`ClientError` whose message is one line meant for a
person (for example ``connection refused (127.0.0.1:8080)``); that wording
lives here, next to the failures it names. The server's pings and pongs are
spotted in passing for ``--show-ping``.

This is trio-websocket's home: it is loaded on first use (``tw`` below), so a
server process that imports the package never loads it; :mod:`.echo` and
:mod:`.interactive` borrow the same lazy module. What each kind of client says
on the connection is theirs; what :func:`run_session` reports is in
:mod:`.events`.
"""

from __future__ import annotations

import errno
import importlib
import json
import socket
import ssl
import unicodedata
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeAlias

import trio

from ..envelopes import Frame
from ..errors import ClientError
from ..frames import FrameScanner
from ..http import format_host
from .events import Closed, ControlFrame, EchoResult, Event, Message, Opened, Received
from .resume import Position


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
    "DEFAULT_URL",
    "Talk",
    "Target",
    "parse_url",
    "receive",
    "record_server_close",
    "run_session",
]

DEFAULT_URL = "ws://127.0.0.1:8080"


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
    # Non-ASCII (café) goes on the wire percent-encoded as UTF-8, as a browser does,
    # normalised to NFC first (as the server names rooms: café typed with a combining
    # accent is the same room); what is ASCII, %-escapes included, is left as it is.
    resource = unicodedata.normalize("NFC", resource)
    resource = urllib.parse.quote(resource, safe="".join(map(chr, range(0x21, 0x7F))))
    return Target(
        url=url,
        host=parts.hostname,
        port=port if port is not None else (443 if secure else 80),
        resource=resource,
        secure=secure,
    )


#: What a session does once it is open: given the connection, the result to fill
#: in and the nursery it runs in (cancelled when *stop* is set), return the close
#: code and reason to send.
Talk: TypeAlias = (
    "Callable[[WebSocketConnection, EchoResult, trio.Nursery], Awaitable[tuple[int, str | None]]]"
)


async def run_session(
    url: str,
    timeout: float,
    ssl_context: ssl.SSLContext | None,
    headers: Iterable[tuple[str, str]],
    subprotocols: list[str],
    report: Callable[[Event], None],
    stop: trio.Event | None,
    talk: Talk,
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


async def receive(
    ws: WebSocketConnection,
    result: EchoResult,
    report: Callable[[Event], None],
    position: Position | None,
) -> tuple[Message, Frame | None]:
    """The next message: recorded in *result*, reported, and read by *position*
    (which returns it decoded, when it is an envelope)."""
    message = await ws.get_message()
    result.received.append(message)
    report(Received(message))
    return message, position.read(message, report) if position is not None else None


def record_server_close(result: EchoResult, closed: tw.ConnectionClosed) -> None:
    """The server closed first: note that, and its code and reason, in *result*."""
    reason = closed.reason
    result.closed_by_server = True
    result.close_code = reason.code if reason else None
    result.close_reason = reason.reason if reason else None


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
        text = rejection.body.decode("utf-8", "replace").strip()
        try:  # ours: {"error": "missing or wrong token"}
            said = json.loads(text).get("error")
        except (ValueError, AttributeError):
            said = None
        if isinstance(said, str):
            why = said.splitlines()[0][:200] if said.strip() else ""
        else:  # another server's first line (it may start with the status again)
            first = text.splitlines()[:1]
            why = first[0].removeprefix(str(status)).strip()[:200] if first else ""
    return f"refused: HTTP {status}" + (f" {why}" if why else "") + f" ({target.url})"


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        leaves.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return leaves


async def _cancel_when_set(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


#: How a certificate that does not verify can be trusted; the CLI says something else
#: when it was given a --cacert already.
TRUST_HINT = "pass --cacert FILE or --insecure"

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
                + TRUST_HINT
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
