"""The interactive client, like wscat: type lines, see every message as it arrives.

:func:`run_interactive` sends each line it reads and runs the slash commands
(``/ping``, ``/close [code [reason]]``, ``/binary HEX``, ``//text``), while a
second task reports what the server sends the moment it arrives. This module
owns those lines and commands; the connection itself is :mod:`.session`'s,
the events it reports are :mod:`.events`', and with *resume* it reconnects
through :mod:`.resume`, reading *lines* through one channel so that no line
typed between two connections is lost.
"""

from __future__ import annotations

import math
import secrets
import ssl
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

import trio

from ..envelopes import SUBPROTOCOL, encode_publish
from ..errors import ClientError
from .events import EchoResult, Event, Message, Notice, Ponged, Sent
from .resume import Position, resuming
from .session import receive, record_server_close, run_session

if TYPE_CHECKING:
    import trio_websocket as tw
    from trio_websocket import WebSocketConnection
else:
    from .session import tw  # loaded on first use

__all__ = ["run_interactive"]


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
        # v1 too, for the server's word on who sent each message (``from``).
        return await _interactive_once(
            url, lines, timeout, ssl_context, headers, [*subprotocols, SUBPROTOCOL], report,
            stop, Position(),
        )  # fmt: skip
    send, receive = trio.open_memory_channel[str](math.inf)

    async def pump() -> None:  # one reader of *lines* for every session: none is lost
        async with send:
            async for line in lines:
                send.send_nowait(line)

    def session(at: str, position: Position) -> Awaitable[EchoResult]:
        return _interactive_once(
            at, receive, timeout, ssl_context, headers, [*subprotocols, SUBPROTOCOL],
            report, stop, position,
        )  # fmt: skip

    error: ClientError | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump)
        try:
            result = await resuming(url, session, report, stop)
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
    position: Position | None,
) -> EchoResult:
    async def talk(
        ws: WebSocketConnection, result: EchoResult, conversation: trio.Nursery
    ) -> tuple[int, str | None]:
        if position is not None:
            position.speaks_v1 = None if ws.subprotocol == SUBPROTOCOL else False
        conversation.start_soon(
            _print_incoming, ws, result, report, conversation.cancel_scope, position
        )
        return await _send_lines(ws, lines, result, report, timeout, position)

    return await run_session(url, timeout, ssl_context, headers, subprotocols, report, stop, talk)


async def _print_incoming(
    ws: WebSocketConnection,
    result: EchoResult,
    report: Callable[[Event], None],
    session: trio.CancelScope,
    position: Position | None = None,
) -> None:
    """Report messages as they arrive; end the session when the server closes."""
    try:
        while True:
            await receive(ws, result, report, position)
    except tw.ConnectionClosed as exc:
        record_server_close(result, exc)
        session.cancel()


async def _send_lines(
    ws: WebSocketConnection,
    lines: AsyncIterable[str],
    result: EchoResult,
    report: Callable[[Event], None],
    timeout: float,
    position: Position | None = None,
) -> tuple[int, str | None]:
    """Send each line (or run it as a command); return the close code and reason to use.
    To a v1 server a line goes as a ``publish`` with an id: its ack says where it
    landed, and a resend after a reconnect is not delivered twice."""
    async for line in lines:
        if not line.strip():
            continue  # an empty line sends nothing (Enter pressed twice)
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
            if position is not None and position.speaks_v1:
                await ws.send_message(encode_publish(secrets.token_hex(6), message))
            else:
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
