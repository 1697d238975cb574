"""What the backplane tests share: a ``serve --redis`` process, v1 frames read
by kind, and the health and metrics endpoints."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from websockets.trio.client import ClientConnection

from .processes import Process, run_cli
from .wsraw import http_exchange

V1 = ["trio-ws-demo.v1"]


@asynccontextmanager
async def serve(redis_url: str, *flags: str) -> AsyncIterator[tuple[Process, str]]:
    """A ``serve --redis`` process; yields it and its ws:// base URL."""
    async with run_cli("serve", "--port", "0", "--redis", redis_url, *flags) as process:
        line = await process.readline()
        assert line.startswith("Listening on ws://127.0.0.1:"), line
        yield process, line.split()[2]


async def frames(ws: ClientConnection, count: int) -> list[dict[str, object]]:
    """The next *count* v1 message frames (other v1 frames skipped)."""
    seen: list[dict[str, object]] = []
    while len(seen) < count:
        frame = json.loads(await ws.recv())
        if frame["type"] == "message":
            seen.append(frame)
    return seen


async def until_frame(ws: ClientConnection, kind: str) -> dict[str, object]:
    while True:
        frame = json.loads(await ws.recv())
        if frame["type"] == kind:
            return dict(frame)


async def next_frame_but_no_message(
    ws: ClientConnection, kind: str, allow: set[str] | None = None
) -> dict[str, object]:
    """The next frame of *kind*; fails on a message frame before it (or, with
    *allow*, on any frame not of a kind it names)."""
    while True:
        frame = json.loads(await ws.recv())
        if frame["type"] == kind:
            return dict(frame)
        assert frame["type"] != "message", frame
        assert allow is None or frame["type"] in allow, frame


async def healthz(port: int) -> tuple[int, dict[str, object]]:
    answer = await http_exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


async def metrics(port: int) -> str:
    answer = await http_exchange(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    return answer.partition(b"\r\n\r\n")[2].decode()
