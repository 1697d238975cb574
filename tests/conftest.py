"""Shared fixtures: real servers on 127.0.0.1, port 0, owned by the test's nursery."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio

from trio_ws_demo import BroadcastServer, ServerOptions

StartServer = Callable[..., Awaitable[BroadcastServer]]


@pytest.fixture
def start_server(nursery: trio.Nursery) -> StartServer:
    """Start a server with the given options; it stops when the test ends."""

    async def start(options: ServerOptions | None = None) -> BroadcastServer:
        server = BroadcastServer(options)
        await nursery.start(server.run, "127.0.0.1", 0)
        return server

    return start


@pytest.fixture
async def server(start_server: StartServer) -> BroadcastServer:
    return await start_server()


def url_of(server: BroadcastServer, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"
