"""Shared fixtures: real servers on 127.0.0.1, port 0, owned by the test's nursery.

Also the one skip policy: a test may skip where what it needs is missing
(Chromium, tmux, Node, redis-server, openssl, an IPv6 loopback), saying how
to get it; under CI (``$CI`` set: ``.ci/run`` exports it, after installing all
of those) every skip is a failure with that reason, so nothing passes there
untested, unless the reason says what the machine itself cannot do
(:data:`MACHINE_CANNOT`: no IPv6 loopback, say), which stays a visible skip.
"""

from __future__ import annotations

import fcntl
import os
import socket
import ssl
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio
import trustme

from trio_ws_demo import BroadcastServer, ServerOptions

if TYPE_CHECKING:
    from .redis_server import RedisServer
    from .terminal import Terminal

StartServer = Callable[..., Awaitable[BroadcastServer]]

UNDER_CI = bool(os.environ.get("CI"))
#: The one way a skip stays a skip under CI: its reason says what the machine
#: itself cannot do, which no install in .ci/run can change (shown by -ra).
MACHINE_CANNOT = "this machine cannot: "


def _fail_under_ci(report: pytest.TestReport | pytest.CollectReport) -> None:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
    if MACHINE_CANNOT in str(reason):
        return
    report.outcome = "failed"
    report.longrepr = f"skipped under CI, where everything must run: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if UNDER_CI and report.skipped and not hasattr(report, "wasxfail"):
        _fail_under_ci(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if UNDER_CI and report.skipped:  # a module-level skip
        _fail_under_ci(report)


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


@pytest.fixture
def port_8080() -> Iterator[None]:
    """Hold 127.0.0.1:8080, echo's default URL, for one test: an exclusive lock on a
    file all our test processes share (xdist workers, two nox sessions, other runs
    on the machine), so none finds the port taken by another and skips.

    A lock, not ``xdist_group``: pytest-xdist 3.8 groups by rewriting
    ``item._nodeid``, which pytest 9.2 no longer reads, so its groups silently split.
    """
    with open(Path(tempfile.gettempdir(), "trio-ws-demo-port-8080.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


#: For the tests that must listen on 127.0.0.1:8080 (see :func:`port_8080`).
PORT_8080 = pytest.mark.usefixtures("port_8080")


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


@pytest.fixture
async def redis(nursery: trio.Nursery) -> AsyncIterator[RedisServer]:
    """A redis-server of the test's own (skips, or fails under CI, without one)."""
    from .redis_server import RedisServer

    server = RedisServer(nursery)
    await server.start()
    try:
        yield server
    finally:
        server.thaw()
        await server.kill()


@pytest.fixture
async def terminal_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Terminal]]:
    from .terminal import Terminal  # skips the test where there is no tmux

    opened: list[Terminal] = []

    def start(url: str, state: Path | None = None, *flags: str) -> Terminal:
        # The shell goes on after the client exits, so its last lines stay readable.
        # The line history goes to *state* (a fresh directory per test by default).
        state = state or tmp_path / f"state{len(opened)}"
        command = (
            f"XDG_STATE_HOME={state} {sys.executable} -m trio_ws_demo echo --interactive "
            f"{' '.join(flags)} {url}; echo EXIT=$?"
        )
        terminal = Terminal(command, tmp_path / f"pane{len(opened)}")
        opened.append(terminal)
        return terminal

    yield start
    for terminal in opened:
        await terminal.close()
