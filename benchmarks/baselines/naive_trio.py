"""Baseline: the article's server transliterated naively to trio-websocket.

Every message is sent to every client in turn, awaiting each send, inside the
sender's handler: one client that stops reading stalls everyone.
"""

from __future__ import annotations

import contextlib
import sys

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

clients: set[WebSocketConnection] = set()


async def handler(request: WebSocketRequest) -> None:
    ws = await request.accept()
    clients.add(ws)
    try:
        while True:
            message = await ws.get_message()
            for client in list(clients):
                with contextlib.suppress(ConnectionClosed):
                    await client.send_message(message)
    except ConnectionClosed:
        pass
    finally:
        clients.discard(ws)


async def main(port: int) -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, handler, "127.0.0.1", port, None)
        print(f"Listening on ws://127.0.0.1:{server.port}", flush=True)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 0)
