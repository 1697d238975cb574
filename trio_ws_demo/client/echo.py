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

import secrets
import ssl
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable
from contextlib import aclosing
from typing import TYPE_CHECKING

import trio

from ..envelopes import SUBPROTOCOL, AckFrame, MessageFrame, carries, encode_publish
from .events import Echoed, EchoResult, Event, Message, Sent
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
    unechoed: dict[str, Message] = {}
    if not resume:
        return await _run_once(
            url, messages, timeout, interval, listen, ssl_context, headers,
            [*subprotocols, *([SUBPROTOCOL] if envelopes else [])], report, stop,
            Position() if envelopes else None, unechoed,
        )  # fmt: skip
    first = [messages]

    def session(at: str, position: Position) -> Awaitable[EchoResult]:
        # Sent once; a reconnect sends again, with the same id, only what was
        # not acked (the server publishes an id once), then listens.
        sending, first[:] = first[0], [()]
        return _run_once(
            at, sending, timeout, interval, True, ssl_context, headers,
            [*subprotocols, SUBPROTOCOL], report, stop, position, unechoed,
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
    unechoed: dict[str, Message],
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
        echo = _Echoes(ws, result, report, timeout, reading, unechoed)
        try:
            await echo.converse(messages, interval, listen)
        except tw.ConnectionClosed as exc:
            record_server_close(result, exc)
        return 1000, None

    return await run_session(url, timeout, ssl_context, headers, subprotocols, report, stop, talk)


class _Echoes:
    """One connection's conversation: send each message, await its echo.

    On a ``trio-ws-demo.v1`` server a message goes out as a ``publish`` with
    an id, and its echo is the message at the offset the ack names: never a
    history copy with the same text, nor another client's. Ids not acked yet
    are kept in *unechoed* (shared by the connections of one ``--resume``
    run): the next connection sends them again, and the server publishes
    each id once. Elsewhere the echo is the first message equal to it.
    """

    def __init__(
        self,
        ws: WebSocketConnection,
        result: EchoResult,
        report: Callable[[Event], None],
        timeout: float,
        position: Position | None,
        unechoed: dict[str, Message],
    ) -> None:
        self._ws, self._result, self._report = ws, result, report
        self._timeout, self._position, self._unechoed = timeout, position, unechoed

    async def converse(
        self, messages: Iterable[Message] | AsyncIterable[Message], interval: float, listen: bool
    ) -> None:
        position = self._position
        if position is not None and position.speaks_v1 is None:
            # Its first frame says whether it speaks v1 (a server that merely
            # took the subprotocol sends nothing first: then it does not).
            with trio.move_on_after(min(self._timeout, _GREETING_WAIT)):
                await self._receive()
        for identifier, message in list(self._unechoed.items()):
            await self._send(message, identifier)  # again: published once, by its id
        first = True
        async with aclosing(_iterate(messages)) as iterator:
            async for message in iterator:
                if not first and interval > 0:
                    await trio.sleep(interval)
                first = False
                self._report(Sent(message))
                self._result.sent.append(message)
                await self._send(message, secrets.token_hex(6))
        if listen:
            while True:
                await self._receive()

    def _v1(self) -> bool:
        return self._position is not None and bool(self._position.speaks_v1)

    async def _send(self, message: Message, identifier: str) -> None:
        result = self._result
        # Counted as missing until its echo arrives, even if the server closes first.
        result.missing.append(message)
        if self._v1():
            self._unechoed[identifier] = message
            await self._ws.send_message(encode_publish(identifier, message))
        else:
            await self._ws.send_message(message)
        if await self._await_echo(message, identifier):
            result.missing.remove(message)
            self._unechoed.pop(identifier, None)
            self._report(Echoed(message))

    async def _receive(self) -> tuple[Message, object]:
        return await receive(self._ws, self._result, self._report, self._position)

    async def _await_echo(self, message: Message, identifier: str) -> bool:
        """Report everything that arrives until *message* comes back; False on timeout."""
        at: int | None = None  # the offset its ack named
        carrying: set[int] = set()  # offsets of messages with its text, seen meanwhile
        with trio.move_on_after(self._timeout):
            while True:
                received, data = await self._receive()
                if not self._v1():
                    if received == message:
                        return True
                elif isinstance(data, AckFrame) and data.identifier == identifier:
                    at = data.offset
                    if at in carrying:  # the message came first: it was delivered, then acked
                        return True
                elif isinstance(data, MessageFrame) and carries(data, message):
                    if at is not None and data.offset == at:
                        return True
                    carrying.add(data.offset)
        return False


#: Seconds a v1 server's first frame is awaited before the first send. It
#: sends it right after the 101 (with the history), so it is there at once;
#: a server that took the subprotocol without speaking it costs this once.
_GREETING_WAIT = 0.25
