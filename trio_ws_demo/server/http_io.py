"""The I/O half of :mod:`trio_ws_demo.http`: read a request head from a stream,
write a response, linger before a close.

The parsing and the bytes of a response are the sans-I/O core's; this module
only moves them, so the front door, the publish API and the web routes share
one way to read and answer.
"""

from __future__ import annotations

import contextlib
import json

import trio

from ..http import DEFAULT_MAX_REQUEST_HEAD, HeadReader, HttpRefusal, RequestHead, response

__all__ = [
    "LINGER_BYTES",
    "LINGER_SECONDS",
    "linger",
    "read_request_head",
    "send_error",
    "send_response",
]

LINGER_SECONDS = 1.0
LINGER_BYTES = 256 * 1024


async def read_request_head(
    stream: trio.abc.Stream, max_size: int = DEFAULT_MAX_REQUEST_HEAD
) -> RequestHead | HttpRefusal | None:
    """Read one request head from *stream*: the head, an :class:`HttpRefusal`
    for a malformed or oversized one, or None if the peer closed first. The
    caller bounds the time."""
    reader = HeadReader(max_size)
    while True:
        data = await stream.receive_some(reader.wanted)
        if not data:
            return None
        head = reader.feed(data)
        if head is not None:
            return head


async def send_response(
    stream: trio.abc.Stream,
    status: int,
    *,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    content_type: str = "text/plain; charset=utf-8",
    head_only: bool = False,
) -> None:
    """Write one complete HTTP/1.1 response with ``Connection: close``."""
    answer = response(
        status, headers=headers, body=body, content_type=content_type, head_only=head_only
    )
    await stream.send_all(answer)


async def send_error(
    stream: trio.abc.Stream,
    status: int,
    reason: str,
    *,
    headers: list[tuple[str, str]] | None = None,
    head_only: bool = False,
) -> None:
    """Write an error answer whose body is ``{"error": reason}``, as the publish
    API's errors are: one JSON shape for every HTTP error a program reads."""
    body = json.dumps({"error": reason}).encode()
    await send_response(
        stream,
        status,
        headers=headers,
        body=body,
        content_type="application/json",
        head_only=head_only,
    )


async def linger(stream: trio.abc.Stream) -> None:
    """Half-close and drain briefly (at most :data:`LINGER_BYTES` for
    :data:`LINGER_SECONDS`), so that unread request bytes do not turn our close
    into a reset that destroys the response (RFC 9112 §9.6). Used after every
    answer that closes the connection, by the front door and the publish API."""
    if not isinstance(stream, trio.abc.HalfCloseableStream):
        return
    with (
        trio.move_on_after(LINGER_SECONDS),
        contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
    ):
        await stream.send_eof()
        drained = 0
        while drained < LINGER_BYTES and (chunk := await stream.receive_some(65536)):
            drained += len(chunk)
