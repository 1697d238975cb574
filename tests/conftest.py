"""Shared fixtures: real servers on 127.0.0.1, port 0, owned by the test's nursery."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Awaitable, Callable

import pytest
import trio
import trustme

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


def free_port() -> int:
    """A loopback port free now (for processes that must be told their port)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context
