"""Soak: a reconnect storm, then many connect-send-receive-disconnect cycles.

    python benchmarks/soak.py [--storm 5000] [--cycles 20000] [--concurrency 200]

**Storm.** What a deploy does: every client reconnects at once. *storm*
clients open their WebSocket handshakes all at the same moment against
``python -m trio_ws_demo serve`` with its default limits, and hold on. Each
must get ``101`` (or a clean ``503`` past ``--max-clients``): none may hang
or be reset. It reports how long the storm took.

**Churn.** Starts ``python -m trio_ws_demo serve --echo`` in its own process,
then runs the cycles with our client, *concurrency* at a time. It asserts
that every client got its echo, and that the server's open file descriptors
and RSS come back to within 10% of their baseline once the churn is over.
The baseline is taken after a warm-up round (a quarter of the cycles), so
that allocator pools, imports and time-bounded heaps that fill once are not
counted as a leak.
"""

from __future__ import annotations

import argparse
import base64
import collections
import os
import resource
import sys
import time
import urllib.parse
from pathlib import Path

import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).parent))
from harness import OUR_SERVER, sample, start_server

from trio_ws_demo import run_client


async def churn(url: str, cycles: int, concurrency: int) -> int:
    """Run *cycles* echo round trips, *concurrency* at once; return how many failed."""
    failures = 0
    limit = trio.CapacityLimiter(concurrency)

    async def one(n: int) -> None:
        nonlocal failures
        async with limit:
            message = f"soak {n}"
            try:
                result = await run_client(url, [message], timeout=30)
            except Exception as exc:  # count and report, never hide
                print(f"cycle {n}: {exc}", file=sys.stderr)
                failures += 1
                return
            if not result.ok or result.received != [message]:
                failures += 1

    async with trio.open_nursery() as nursery:
        for n in range(cycles):
            await limit.acquire_on_behalf_of(n)  # bounded spawning, not 20k idle tasks
            limit.release_on_behalf_of(n)
            nursery.start_soon(one, n)
    return failures


async def storm(url: str, clients: int, timeout: float) -> tuple[collections.Counter[str], float]:
    """Open *clients* WebSocket handshakes at once; count how each one ended."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    outcomes: collections.Counter[str] = collections.Counter()
    opened: list[trio.SocketStream] = []
    go = trio.Event()

    async def one(n: int) -> None:
        key = base64.b64encode(n.to_bytes(16, "big")).decode()
        request = (
            f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        await go.wait()
        try:
            with trio.fail_after(timeout):
                stream = await trio.open_tcp_stream(host, port)
                await stream.send_all(request)
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        outcomes["closed without an answer"] += 1
                        await stream.aclose()
                        return
                    head += chunk
        except trio.TooSlowError:
            outcomes[f"hung (no answer within {timeout:g} s)"] += 1
            return
        except (OSError, trio.BrokenResourceError) as exc:
            outcomes[f"reset or refused ({exc.__class__.__name__})"] += 1
            return
        status = head.split(b" ", 2)[1].decode()
        outcomes[
            {"101": "101 switching protocols", "503": "503 too many clients"}.get(
                status, f"HTTP {status}"
            )
        ] += 1
        opened.append(stream)

    async with trio.open_nursery() as nursery:
        for n in range(clients):
            nursery.start_soon(one, n)
        await trio.testing.wait_all_tasks_blocked()
        started = time.perf_counter()
        go.set()
    elapsed = time.perf_counter() - started
    for stream in opened:
        await trio.aclose_forcefully(stream)
    return outcomes, elapsed


def run_storm(clients: int, timeout: float = 60) -> bool:
    """The storm against a fresh server with default limits; True if it passed."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server, url = start_server(OUR_SERVER)
    try:
        outcomes, elapsed = trio.run(storm, url, clients, timeout)
    finally:
        server.terminate()
        server.wait(timeout=30)
    clean = {"101 switching protocols", "503 too many clients"}
    print(f"storm: {clients} clients at once, all answered in {elapsed:.1f} s")
    for outcome, count in outcomes.most_common():
        print(f"  {count:6d}  {outcome}")
    ok = set(outcomes) <= clean and sum(outcomes.values()) == clients
    print("storm: PASS" if ok else "storm: FAIL (a client hung, was reset or got another answer)")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storm", type=int, default=5000, help="clients in the storm (0: none)")
    parser.add_argument("--cycles", type=int, default=20_000, help="churn cycles (0: none)")
    parser.add_argument("--concurrency", type=int, default=200)
    args = parser.parse_args()

    storm_ok = run_storm(args.storm) if args.storm else True
    if not args.cycles:
        return 0 if storm_ok else 1
    server, url = start_server([*OUR_SERVER, "--echo"])
    try:
        print(f"server pid {server.pid} at {url}")

        # Warm-up: long enough for what is held for a while by design (trio's
        # deadline heap, the keepalive's heap: up to 20 s of connections) to level off.
        trio.run(churn, url, max(args.concurrency, args.cycles // 4), args.concurrency)
        baseline = sample(server.pid)
        started = time.perf_counter()
        failures = trio.run(churn, url, args.cycles, args.concurrency)
        elapsed = time.perf_counter() - started
        time.sleep(0.5)  # let the server finish closing the last sockets
        after = sample(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)

    print(
        f"{args.cycles} cycles, {args.concurrency} at a time, in {elapsed:.1f} s "
        f"({args.cycles / elapsed:.0f} cycles/s); failures: {failures}"
    )
    print(f"server fds:  baseline {baseline.open_fds}, after {after.open_fds}")
    print(
        f"server RSS:  baseline {baseline.rss_bytes / 2**20:.1f} MiB, "
        f"after {after.rss_bytes / 2**20:.1f} MiB, peak {after.peak_rss_bytes / 2**20:.1f} MiB"
    )
    print(f"server CPU:  {after.cpu_seconds - baseline.cpu_seconds:.1f} s")
    ok = True
    if failures:
        print(f"FAIL: {failures} cycles did not get their echo")
        ok = False
    if after.open_fds > baseline.open_fds * 1.1:
        print("FAIL: open file descriptors did not return to baseline")
        ok = False
    if after.rss_bytes > baseline.rss_bytes * 1.1:
        print("FAIL: RSS did not return to within 10% of baseline")
        ok = False
    print("soak: PASS" if ok else "soak: FAIL")
    return 0 if ok and storm_ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
