"""Baseline: the `websockets` asyncio server with its broadcast() helper.

broadcast() writes to every client of the sender's room (URL path) without
waiting and without backpressure:
a client that stops reading gets an ever-growing write buffer (see the
websockets broadcast guide).

``--compression deflate`` is websockets' own default (permessage-deflate with
context takeover: a compressor per connection, window 2^12, ``memLevel`` 5);
without it, ``none``, as the plain fan-out rows have always run.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl

from websockets.asyncio.server import ServerConnection, broadcast, serve

# One set of clients per URL path (a room), as our server does; "/" for all
# clients of the plain fan-out scenarios.
rooms: dict[str, set[ServerConnection]] = {}


async def handler(ws: ServerConnection) -> None:
    path = ws.request.path if ws.request else "/"
    clients = rooms.setdefault(path, set())
    clients.add(ws)
    try:
        async for message in ws:
            broadcast(clients, message)
    finally:
        clients.discard(ws)
        if not clients:
            rooms.pop(path, None)


async def main(
    port: int, certfile: str | None, keyfile: str | None, compression: str | None = None
) -> None:
    context = None
    if certfile:  # bench --tls
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certfile, keyfile)
    async with serve(
        handler,
        "127.0.0.1",
        port,
        compression=compression,
        ping_interval=None,
        max_size=2**20,
        ssl=context,
    ) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        scheme = "wss" if context else "ws"
        print(f"Listening on {scheme}://127.0.0.1:{bound}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", nargs="?", type=int, default=0)
    parser.add_argument("certfile", nargs="?")
    parser.add_argument("keyfile", nargs="?")
    parser.add_argument("--compression", choices=["none", "deflate"], default="none")
    args = parser.parse_args()
    compression = None if args.compression == "none" else args.compression
    asyncio.run(main(args.port, args.certfile, args.keyfile, compression))
