"""Churn soak: many connect-send-receive-disconnect cycles against one server.

    python benchmarks/soak.py [--cycles 20000] [--concurrency 200]

Starts ``python -m trio_ws_demo serve --echo`` in its own process, then runs
the cycles with our client, *concurrency* at a time. It asserts that every
client got its echo, and that the server's open file descriptors and RSS
come back to within 10% of their baseline once the churn is over. The
baseline is taken after a warm-up round (a tenth of the cycles), so
that allocator pools and imports that fill once are not counted as a leak.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import trio

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=200)
    args = parser.parse_args()

    server, url = start_server([*OUR_SERVER, "--echo"])
    try:
        print(f"server pid {server.pid} at {url}")

        trio.run(churn, url, max(args.concurrency, args.cycles // 10), args.concurrency)  # warm-up
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
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
