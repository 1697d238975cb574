"""The echo client, as a library: connect, send, wait for each echo, close.

:func:`run_client` never prints. It reports what happens as it happens through
an optional ``on_event`` callback (the CLI prints from there) and returns an
:class:`EchoResult` with everything it saw. Failures to connect or to keep the
connection raise :class:`ClientError`, whose message is one line meant for a
person (for example ``connection refused (127.0.0.1:8080)``).

This module owns the echo conversation only: send a message, await its echo
(inside an envelope when the server speaks ``trio-ws-demo.v1``), and with
``--listen`` stay to report what else arrives. Making the connection is
:mod:`.session`'s job and reconnecting is :mod:`.resume`'s.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable
from contextlib import aclosing
from typing import TYPE_CHECKING

import trio

from ..envelopes import SUBPROTOCOL, carries
from .events import EchoResult, Event, Message, Sent
from .resume import Position, resuming
from .session import receive, record_server_close, run_session

if TYPE_CHECKING:
    import trio_websocket as tw
    from trio_websocket import WebSocketConnection
else:
    from .session import tw  # loaded on first use

__all__ = ["DEFAULT_MESSAGE", "run_client"]

DEFAULT_MESSAGE = "Hello, WebSocket!"


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
            Position() if envelopes else None,
        )  # fmt: skip
    first = [messages]

    def session(at: str, position: Position) -> Awaitable[EchoResult]:
        sending, first[:] = first[0], [()]  # sent once; a reconnect only listens
        return _run_once(
            at, sending, timeout, interval, True, ssl_context, headers,
            [*subprotocols, SUBPROTOCOL], report, stop, position,
        )  # fmt: skip

    return await resuming(url, session, report, stop)


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
    position: Position | None,
) -> EchoResult:
    async def talk(
        ws: WebSocketConnection, result: EchoResult, conversation: trio.Nursery
    ) -> tuple[int, str | None]:
        reading = position
        if ws.subprotocol != SUBPROTOCOL:
            reading = None  # the server did not take it: frames are plain messages
        elif reading is None:
            reading = Position()  # offered with --subprotocol: read envelopes too
        if reading is not None:
            reading.speaks_v1 = None  # this server's first frame will tell
        await _converse(ws, messages, result, report, timeout, interval, listen, reading)
        return 1000, None

    return await run_session(url, timeout, ssl_context, headers, subprotocols, report, stop, talk)


async def _converse(
    ws: WebSocketConnection,
    messages: Iterable[Message] | AsyncIterable[Message],
    result: EchoResult,
    report: Callable[[Event], None],
    timeout: float,
    interval: float,
    listen: bool,
    position: Position | None,
) -> None:
    try:
        await _send_and_listen(ws, messages, result, report, timeout, interval, listen, position)
    except tw.ConnectionClosed as exc:
        record_server_close(result, exc)


async def _send_and_listen(
    ws: WebSocketConnection,
    messages: Iterable[Message] | AsyncIterable[Message],
    result: EchoResult,
    report: Callable[[Event], None],
    timeout: float,
    interval: float,
    listen: bool,
    position: Position | None,
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
            await receive(ws, result, report, position)


async def _await_echo(
    ws: WebSocketConnection,
    message: Message,
    result: EchoResult,
    report: Callable[[Event], None],
    timeout: float,
    position: Position | None,
) -> bool:
    """Report everything that arrives until *message* comes back; False on timeout."""
    with trio.move_on_after(timeout):
        while True:
            received, data = await receive(ws, result, report, position)
            if position is None or not position.speaks_v1:
                if received == message:
                    return True
            elif carries(data, message):
                return True
    return False
