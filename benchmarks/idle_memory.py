"""What one idle connection costs, object by object.

Runs our server in this process under ``tracemalloc``, opens N idle WebSocket
connections from the Node load generator (each joins a room and then says
nothing), and compares a snapshot taken before with one taken while they are
open. Prints the bytes per connection, grouped by the source line that
allocated them, so that a change to what a connection holds can be measured
rather than guessed::

    python benchmarks/idle_memory.py --clients 2000
    python benchmarks/idle_memory.py --clients 2000 --group filename

The figure is Python objects only (what tracemalloc sees); the kernel's socket
buffers and the allocator's slack are in the RSS rows of ``nox -s bench``.
"""

from __future__ import annotations

import argparse
import gc
import json
import tracemalloc
from pathlib import Path

import trio
import trio.testing

from trio_ws_demo.server import BroadcastServer, ServerOptions

HERE = Path(__file__).parent


async def measure(clients: int, group: str, top: int, expand: str) -> None:
    server = BroadcastServer(ServerOptions(max_message_rate=0))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.run, "127.0.0.1", 0)
        url = f"ws://127.0.0.1:{port}/idle"
        config = json.dumps({"url": url, "mode": "idle", "clients": clients, "concurrency": 200})
        loadgen = await trio.lowlevel.open_process(
            ["node", str(HERE / "loadgen.mjs"), config], stdin=-1, stdout=-1
        )
        try:
            assert loadgen.stdout is not None and loadgen.stdin is not None
            lines = _lines(loadgen.stdout)
            assert await anext(lines) == "MEASURE_START"
            gc.collect()
            before = tracemalloc.take_snapshot()
            assert await anext(lines) == "CONNECTED"
            result = json.loads(await anext(lines))
            await _settle(server, clients)
            gc.collect()
            after = tracemalloc.take_snapshot()
            await loadgen.stdin.aclose()
            await loadgen.wait()
        finally:
            loadgen.kill()
        nursery.cancel_scope.cancel()
    stats = after.compare_to(before, "traceback" if group == "ours" else group)
    total = sum(s.size_diff for s in stats)
    if group == "ours":
        expanded = _expanded(stats, expand) if expand else []
        stats = _by_our_line(stats)
    print(f"{result['open']} idle connections: {total / clients:,.0f} bytes of Python objects each")
    print()
    print("| bytes per connection | objects per connection | where |")
    print("|---:|---:|---|")
    for stat in stats[:top]:
        frame = stat.traceback[-1]  # the most recent frame
        where = _short(frame.filename)
        if group != "filename":
            where += f":{frame.lineno}"
        print(f"| {stat.size_diff / clients:,.0f} | {stat.count_diff / clients:.2f} | {where} |")
    if group == "ours" and expand:
        print(f"\nInside {expand}:\n")
        for size, count, where in expanded[:top]:
            print(f"| {size / clients:,.0f} | {count / clients:.2f} | {where} |")


async def _settle(server: BroadcastServer, clients: int) -> None:
    """Wait until every connection is idle: the load generator's CONNECTED
    comes once it has every 101, and the server counts a client before its
    101 goes out, but each connection still has a step or two to take."""
    assert server.statistics().clients == clients
    await trio.testing.wait_all_tasks_blocked(cushion=0.2)


async def _lines(stream: trio.abc.ReceiveStream):  # type: ignore[no-untyped-def]
    buffer = b""
    while True:
        while b"\n" not in buffer:
            chunk = await stream.receive_some()
            if not chunk:
                return
            buffer += chunk
        line, buffer = buffer.split(b"\n", 1)
        yield line.decode().strip()


def _expanded(stats: list[tracemalloc.StatisticDiff], expand: str) -> list[tuple[int, int, str]]:
    """What the allocations charged to our line *expand* (FILE:LINE) are, by
    the innermost line that made each."""
    merged: dict[str, list[int]] = {}
    for stat in stats:
        ours = [f for f in stat.traceback if "trio_ws_demo/" in f.filename]
        if ours and f"{_short(ours[-1].filename)}:{ours[-1].lineno}".endswith(expand):
            inner = stat.traceback[-1]
            sizes = merged.setdefault(f"{_short(inner.filename)}:{inner.lineno}", [0, 0])
            sizes[0] += stat.size_diff
            sizes[1] += stat.count_diff
    return sorted(((s, n, w) for w, (s, n) in merged.items()), key=lambda t: -t[0])


def _by_our_line(stats: list[tracemalloc.StatisticDiff]) -> list[tracemalloc.StatisticDiff]:
    """Charge each allocation to the innermost line of ours that led to it: what
    a connection holds, by the decision in our code that made it hold it."""
    merged: dict[tracemalloc.Frame, list[int]] = {}
    for stat in stats:
        ours = [f for f in stat.traceback if "trio_ws_demo/" in f.filename]
        frame = ours[-1] if ours else stat.traceback[-1]
        sizes = merged.setdefault(frame, [0, 0])
        sizes[0] += stat.size_diff
        sizes[1] += stat.count_diff
    return sorted(
        (
            tracemalloc.StatisticDiff(
                tracemalloc.Traceback(((f.filename, f.lineno),)), 0, size, 0, n
            )
            for f, (size, n) in merged.items()
        ),
        key=lambda s: -s.size_diff,
    )


def _short(filename: str) -> str:
    for marker in ("site-packages/", "trio_ws_demo/", "lib/python3"):
        if marker in filename:
            return filename[filename.index(marker) :]
    return filename


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument(
        "--group",
        choices=["ours", "lineno", "filename"],
        default="ours",
        help="ours: by the line of ours that led to the allocation",
    )
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--expand", default="", metavar="FILE:LINE", help="break one of our lines down"
    )
    args = parser.parse_args()
    tracemalloc.start(40 if args.group == "ours" else 1)
    trio.run(measure, args.clients, args.group, args.top, args.expand)


if __name__ == "__main__":
    main()
