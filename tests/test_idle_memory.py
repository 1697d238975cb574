"""What an idle connection holds, in bytes of Python objects: a bound that a
change to the connection's path must not quietly cross.

Most servers' cost at scale is idle connections (a dashboard's viewers), and
what each one holds is easy to grow by one attribute at a time. The bound is
the measured figure (about 6.1 KB on CPython 3.11 and 6.2 KB on 3.13: see
``benchmarks/idle_memory.py`` for the breakdown) plus a margin for other
Python versions; the connection with a nursery of its own for every idle
client held 7.5 KB, and before that, with wsproto's parser, 8.4 KB.
"""

from __future__ import annotations

import gc
import logging
import tracemalloc

import trio
import trio.testing

from tests.wsraw import RawClient
from trio_ws_demo.server import BroadcastServer, ServerOptions

CLIENTS = 100
BOUND = 6_800
"""Bytes of Python objects per idle connection, allocated by the server's code."""


def _ours(snapshot: tracemalloc.Snapshot) -> int:
    """Bytes allocated where the server's code was on the stack (the test's own
    clients, in this process too, never run the server's code)."""
    return sum(
        trace.size
        for trace in snapshot.traces
        if any("trio_ws_demo" in frame.filename for frame in trace.traceback)
    )


async def test_an_idle_connection_holds_less_than_its_bound() -> None:
    server = BroadcastServer(ServerOptions())
    # What a log handler keeps of the "opened" lines (pytest's capture keeps
    # every record) is not what a connection holds.
    logging.disable(logging.CRITICAL)
    tracemalloc.start(25)
    clients: list[RawClient] = []
    try:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.run, "127.0.0.1", 0)
            clients.append(await RawClient.connect(port))  # it makes what all connections share
            await trio.testing.wait_all_tasks_blocked(cushion=0.1)
            gc.collect()
            before = _ours(tracemalloc.take_snapshot())
            clients += [await RawClient.connect(port) for _ in range(CLIENTS)]
            await trio.testing.wait_all_tasks_blocked(cushion=0.1)
            gc.collect()
            after = _ours(tracemalloc.take_snapshot())
            assert server.statistics().clients == CLIENTS + 1
            per_connection = (after - before) / CLIENTS
            nursery.cancel_scope.cancel()
    finally:
        tracemalloc.stop()
        logging.disable(logging.NOTSET)
        for client in clients:
            client.stream.socket.close()  # type: ignore[attr-defined]
    assert per_connection < BOUND, f"{per_connection:,.0f} bytes per idle connection"
