"""Fan-out benchmark: our server side by side with baselines, in one run.

    python benchmarks/bench.py [--quick] [--duration S] [--servers ours,naive,...]
    python benchmarks/bench.py --compression [--quick]   # benchmarks/compression.py

Servers (each a fresh process per scenario, pinned to core 0):

- ``ours``: ``python -m trio_ws_demo serve``;
- ``naive``: the article's server transliterated to trio-websocket
  (``for c in clients: await c.send_message(m)``);
- ``websockets``: the ``websockets`` asyncio server with ``broadcast()``;
- ``node``: the article's own Node ``ws`` server (the stretch target);
- ``ours-redis`` (``--redis``): ours with ``--redis`` and a fresh local
  ``redis-server`` per run (pinned to the load generator's core; its CPU is
  reported separately), beside ``ours`` without it.

The load generator is Node ``ws`` (``loadgen.mjs``), pinned to core 1: one
Node process handles thousands of sockets and hundreds of thousands of
messages per second, so it out-runs every Python server here; its own CPU use
is reported so that you can check it was never the bottleneck.

Server CPU time comes from ``/proc/PID/stat`` over the measured window only;
peak RSS is the server's ``VmHWM``. For ours, the server's own ``/metrics``
counters over the same window give socket writes per delivery (below 1 when
writes are coalesced).

Run it from a directory without a ``trio_ws_demo`` folder when ``PYTHONPATH``
names the tree to measure: ``python -m`` puts the working directory first.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import compression
import publish_http
from harness import OUR_SERVER, sample, start_server
from stuck import run_stuck

HERE = Path(__file__).parent
SERVER_CORE, LOADGEN_CORE = 0, 1

SERVERS: dict[str, list[str]] = {
    "ours": [*OUR_SERVER, "--max-clients", "100000"],
    "naive": [sys.executable, str(HERE / "baselines" / "naive_trio.py")],
    "websockets": [sys.executable, str(HERE / "baselines" / "websockets_asyncio.py")],
    "node": ["node", str(HERE / "baselines" / "node_article_server.mjs")],
    "ours-redis": [*OUR_SERVER, "--max-clients", "100000"],  # + --redis URL, per run
}
BASELINES = ["naive", "websockets", "node", "ours-redis"]


@dataclass
class Scenario:
    name: str
    mode: str
    clients: int
    payload: int = 64
    window: int = 20
    """Messages in flight per publisher (sent, not yet echoed back to it): with
    more than one, one read of the publisher's socket may hold several."""
    slow: bool = False
    rooms: int = 1
    """Clients spread over this many rooms (URL paths), one publisher each."""
    servers: tuple[str, ...] | None = None
    """Only these servers (the naive and Node servers have no rooms)."""
    concurrency: int = 200
    """idle: handshakes in flight at once (all of them: a storm)."""


@dataclass
class Result:
    server: str
    scenario: str
    numbers: dict[str, float | int | None] = field(default_factory=dict)


def pinned(core: int) -> Callable[[], None]:
    def pin() -> None:
        if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
            os.sched_setaffinity(0, {core})

    return pin


def start_redis() -> tuple[subprocess.Popen[str], str]:
    """A fresh redis-server with no persistence on a free port, pinned to the load
    generator's core (the server's core stays the server's)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    redis = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.PIPE, text=True, preexec_fn=pinned(LOADGEN_CORE),
    )  # fmt: skip
    assert redis.stdout is not None
    for line in redis.stdout:
        if "Ready to accept connections" in line:
            break
    redis.stdout.close()
    return redis, f"redis://127.0.0.1:{port}/0"


TLS_FILES: tuple[str, str] | None = None
"""(certificate, key) made for this run by --tls; both servers serve wss:// with them."""


def make_certificate(directory: Path) -> tuple[str, str]:
    """A self-signed P-256 certificate for 127.0.0.1, made per run with openssl."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


def run_scenario(server: str, scenario: Scenario, duration: float, warmup: float) -> Result:
    redis = None
    argv = SERVERS[server]
    if TLS_FILES is not None:
        cert, key = TLS_FILES
        if server == "ours":
            argv = [*argv, "--certfile", cert, "--keyfile", key]
        elif server == "websockets":
            argv = [*argv, "0", cert, key]
    if server == "ours-redis":
        redis, redis_url = start_redis()
        argv = [*argv, "--redis", redis_url]
    process, url = start_server(argv, pinned(SERVER_CORE))
    result = Result(server, scenario.name)
    if scenario.mode == "stuck":
        try:
            result.numbers = run_stuck(url, process.pid, scenario.clients, STUCK_SECONDS)
        finally:
            process.kill()
            process.wait()
        return result
    config = {
        "url": url,
        "mode": scenario.mode,
        "clients": scenario.clients,
        "payload": scenario.payload,
        "window": scenario.window,
        "slow": scenario.slow,
        "rooms": scenario.rooms,
        "concurrency": scenario.concurrency,
        "duration": duration,
        "warmup": warmup,
    }
    loadgen = subprocess.Popen(
        ["node", str(HERE / "loadgen.mjs"), json.dumps(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=pinned(LOADGEN_CORE),
    )
    assert loadgen.stdout is not None and loadgen.stdin is not None
    try:
        before = after = None
        counters_before = counters_after = None
        numbers: dict[str, float | int | None] = {}
        for line in loadgen.stdout:
            line = line.strip()
            if line == "MEASURE_START":
                counters_before = write_counters(server, url)  # before the CPU sample
                before = sample(process.pid)
                redis_before = sample(redis.pid) if redis else None
            elif line == "MEASURE_END":
                after = sample(process.pid)
                counters_after = write_counters(server, url)
                if counters_before and counters_after:
                    writes = counters_after[0] - counters_before[0]
                    delivered = counters_after[1] - counters_before[1]
                    numbers["writes_per_delivery"] = writes / delivered if delivered else None
                if redis and redis_before:
                    numbers["redis_cpu_s"] = (
                        sample(redis.pid).cpu_seconds - redis_before.cpu_seconds
                    )
            elif line == "CONNECTED":
                time.sleep(1)  # let the server finish the last handshakes' work
                after = sample(process.pid)
                numbers["rss_mib"] = after.rss_bytes / 2**20
                loadgen.stdin.close()
            elif line.startswith("{"):
                numbers.update(json.loads(line))
        loadgen.wait(timeout=60)
        final = sample(process.pid)
        numbers["peak_rss_mib"] = final.peak_rss_bytes / 2**20
        if before and after and scenario.mode == "fanout":
            cpu = after.cpu_seconds - before.cpu_seconds
            seconds = float(numbers["seconds"] or 1)
            deliveries = float(numbers["deliveries"] or 0)
            numbers["deliveries_per_s"] = deliveries / seconds
            numbers["server_cpu_s"] = cpu
            numbers["deliveries_per_cpu_s"] = deliveries / cpu if cpu > 0 else None
            numbers["loadgen_cpu_pct"] = 100 * float(numbers["loadgen_cpu_s"] or 0) / seconds
            numbers["server_cpu_pct"] = 100 * cpu / seconds
            numbers["published_per_s"] = (
                deliveries / seconds / max(1, scenario.clients // scenario.rooms)
            )
        if before and after and scenario.mode == "idle":
            opened = float(numbers.get("open") or 0)
            cpu = after.cpu_seconds - before.cpu_seconds
            numbers["cpu_s_per_1000"] = 1000 * cpu / opened if opened else None
        result.numbers = numbers
    finally:
        loadgen.kill()
        process.kill()
        process.wait()
        if redis is not None:
            redis.kill()
            redis.wait()
    return result


def write_counters(server: str, url: str) -> tuple[float, float] | None:
    """Our server's socket writes and deliveries so far, from its /metrics (None
    for the baselines, over TLS, and for a server without the writes counter)."""
    if not server.startswith("ours") or not url.startswith("ws://"):
        return None
    found: dict[str, float] = {}
    with urllib.request.urlopen(f"http://{url[5:].split('/')[0]}/metrics", timeout=5) as answer:
        for line in answer.read().decode().splitlines():
            name, _, value = line.partition(" ")
            if name in (
                "trio_ws_demo_socket_writes_total",
                "trio_ws_demo_messages_delivered_total",
            ):
                found[name] = float(value)
    if len(found) < 2:
        return None
    return found["trio_ws_demo_socket_writes_total"], found["trio_ws_demo_messages_delivered_total"]


def fmt(value: object, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def ratio(ours: object, base: object) -> str:
    if not isinstance(ours, (int, float)) or not isinstance(base, (int, float)) or not base:
        return "–"
    return f"{ours / base:.2f}×"


Numbers = dict[str, float | int | None]


def ratio_rows(
    by: dict[tuple[str, str], Numbers],
    scenario: Scenario,
    servers: list[str],
    columns: list[str | None],
) -> list[str]:
    """One "ours ÷ baseline" row per baseline; *columns* names the metric of each cell."""
    if "ours" not in servers:
        return []
    ours = by.get(("ours", scenario.name), {})
    rows = []
    for base in [b for b in BASELINES if b in servers]:
        theirs = by.get((base, scenario.name), {})
        if base == "ours-redis":  # the question is what Redis costs: with ÷ without
            cells = [ratio(theirs.get(c), ours.get(c)) if c else "" for c in columns]
            rows.append("| ours-redis ÷ ours | " + " | ".join(cells) + " |")
            continue
        cells = [ratio(ours.get(c), theirs.get(c)) if c else "" for c in columns]
        rows.append(f"| ours ÷ {base} | " + " | ".join(cells) + " |")
    return rows


def report(results: list[Result], scenarios: list[Scenario], servers: list[str]) -> str:
    by = {(r.server, r.scenario): r.numbers for r in results}
    lines = []
    everyone = servers
    for scenario in scenarios:
        servers = [s for s in everyone if scenario.servers is None or s in scenario.servers]
        lines.append(f"\n### {scenario.name}\n")
        if scenario.mode == "stuck":
            lines += [
                f"{scenario.clients} clients never read (4 KiB receive buffers) while one "
                f"publisher floods 64 KiB messages for {STUCK_SECONDS:g} s\n",
                "| server | peak RSS MiB | messages published/s | stuck clients closed |",
                "|---|---|---|---|",
            ]
            for server in servers:
                n = by.get((server, scenario.name), {})
                lines.append(
                    f"| {server} | {fmt(n.get('peak_rss_mib'), 1)} | {fmt(n.get('sent_per_s'))}"
                    f" | {fmt(n.get('stuck_closed'))} of {fmt(n.get('stuck'))} |"
                )
            lines += ratio_rows(by, scenario, servers, ["peak_rss_mib", "sent_per_s"])
            continue
        if scenario.mode == "fanout":
            header = (
                "| server | deliveries/s | deliveries/server CPU-s | p50 ms | p99 ms | peak RSS MiB"
                " | lost | reordered | server CPU % | loadgen CPU % |"
            )
            lines += [header, "|" + "---|" * 10]
            for server in servers:
                n = by.get((server, scenario.name), {})
                extra = ""
                if scenario.slow:
                    code = n.get("slow_close_code")
                    extra = f" (stuck client: close {code})" if code else " (stuck client: kept)"
                lines.append(
                    f"| {server}{extra} | {fmt(n.get('deliveries_per_s'))} | {fmt(n.get('deliveries_per_cpu_s'))}"
                    f" | {fmt(n.get('p50_ms'), 2)} | {fmt(n.get('p99_ms'), 2)} | {fmt(n.get('peak_rss_mib'), 1)}"
                    f" | {fmt(n.get('lost'))} | {fmt(n.get('reordered'))}"
                    f" | {fmt(n.get('server_cpu_pct'))} | {fmt(n.get('loadgen_cpu_pct'))} |"
                )
            if scenario.slow:
                plain = scenario.name.replace("slow consumer", "fan-out")
                for server in servers:
                    with_slow = by.get((server, scenario.name), {}).get("deliveries_per_s")
                    without = by.get((server, plain), {}).get("deliveries_per_s")
                    lines.append(
                        f"| {server}: healthy deliveries/s with ÷ without the slow client"
                        f" | {ratio(with_slow, without)} | | | | | | | | |"
                    )
            fanout_columns = [
                "deliveries_per_s",
                "deliveries_per_cpu_s",
                None,
                "p99_ms",  # lower is better: a ratio below 1 is ours faster
                "peak_rss_mib",
            ]
            lines += ratio_rows(by, scenario, servers, [*fanout_columns, None, None, None, None])
            for server in servers:
                n = by.get((server, scenario.name), {})
                if n.get("writes_per_delivery") is not None:
                    lines.append(
                        f"\n{server}: {fmt(n.get('writes_per_delivery'), 3)} socket writes per "
                        "delivery in the measured window (the server's own counters)"
                    )
                if "redis_cpu_s" in n:
                    lines.append(
                        f"\n{server}: {fmt(n.get('published_per_s'))} messages/s published through "
                        f"Redis; Redis used {fmt(n.get('redis_cpu_s'), 2)} CPU-s in the "
                        f"measured window (not in the server's CPU above)"
                    )
        else:
            lines += [
                "| server | server CPU-s per 1,000 handshakes | peak RSS MiB | handshakes/s"
                " | connect p50 ms | connect p99 ms | open | failed |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for server in servers:
                n = by.get((server, scenario.name), {})
                lines.append(
                    f"| {server} | {fmt(n.get('cpu_s_per_1000'), 2)} | {fmt(n.get('peak_rss_mib'), 1)}"
                    f" | {fmt(n.get('handshakes_per_s'))} | {fmt(n.get('connect_p50_ms'), 1)}"
                    f" | {fmt(n.get('connect_p99_ms'), 1)}"
                    f" | {fmt(n.get('open'))} | {fmt(n.get('connect_failures'))} |"
                )
            lines += ratio_rows(
                by,
                scenario,
                servers,
                [
                    "cpu_s_per_1000",
                    "peak_rss_mib",
                    "handshakes_per_s",
                    "connect_p50_ms",
                    "connect_p99_ms",
                ],
            )
    return "\n".join(lines)


def tls_scenarios() -> list[Scenario]:
    both = ("ours", "websockets")
    return [
        Scenario("wss fan-out 100 × 64 B", "fanout", 100, servers=both),
        Scenario("wss fan-out 100 × 16 KiB", "fanout", 100, payload=16 * 1024, window=4,
                 servers=both),
        Scenario("wss idle 5000 connections", "idle", 5000, servers=both),
    ]  # fmt: skip


def redis_scenarios() -> list[Scenario]:
    both = ("ours", "ours-redis")
    return [
        Scenario("fan-out 100 × 64 B", "fanout", 100, servers=both),
        Scenario("fan-out 1000 × 64 B", "fanout", 1000, servers=both),
        # One receiver per room and 100 publishers: the publish path's ceiling.
        Scenario(
            "publish: 100 rooms × 1 client × 64 B",
            "fanout",
            100,
            window=20,
            rooms=100,
            servers=both,
        ),
    ]


#: How long the publisher floods the stuck clients.
STUCK_SECONDS = 8.0


def stuck_scenarios() -> list[Scenario]:
    """`--stuck`: clients that never read while one publisher floods 64 KiB messages."""
    return [
        Scenario("stuck clients: 50 never read, 64 KiB flood", "stuck", 50),
        Scenario("stuck clients: 200 never read, 64 KiB flood", "stuck", 200),
    ]


def windowed(name: str, clients: int, payload: int) -> list[Scenario]:
    """The fan-out row *name* with 1 and with 8 messages in flight."""
    return [
        Scenario(f"{name}, window {window}", "fanout", clients, payload=payload, window=window)
        for window in (1, 8)
    ]


def with_window(scenario: Scenario, window: int) -> Scenario:
    """*scenario* with *window* messages in flight (named so), if it is a fan-out."""
    if scenario.mode != "fanout":
        return scenario
    name = scenario.name.split(", window ")[0]
    return dataclasses.replace(scenario, name=f"{name}, window {window}", window=window)


def scenarios_for(quick: bool) -> list[Scenario]:
    if quick:
        return [
            Scenario("fan-out 20 × 64 B", "fanout", 20),
            Scenario(
                "slow consumer 20 × 16 KiB", "fanout", 20, payload=16 * 1024, window=4, slow=True
            ),
            Scenario("idle 200", "idle", 200),
        ]
    return [
        Scenario("fan-out 100 × 64 B", "fanout", 100),
        Scenario("fan-out 1000 × 64 B", "fanout", 1000),
        Scenario("fan-out 100 × 16 KiB", "fanout", 100, payload=16 * 1024, window=4),
        Scenario("fan-out 1000 × 16 KiB", "fanout", 1000, payload=16 * 1024, window=2),
        # 16 KiB so that the stuck client overflows socket buffers and its
        # budget within the measured window; compare with the 16 KiB fan-out.
        Scenario(
            "slow consumer 100 × 16 KiB", "fanout", 100, payload=16 * 1024, window=4, slow=True
        ),
        Scenario(
            "slow consumer 1000 × 16 KiB", "fanout", 1000, payload=16 * 1024, window=2, slow=True
        ),
        Scenario(
            "rooms 100 × 10 clients × 64 B",
            "fanout",
            1000,
            window=5,
            rooms=100,
            servers=("ours", "websockets"),
        ),
        # The window on its own (issue 30): 1 is one message per read of the
        # publisher's socket (nothing to coalesce), 8 is up to eight.
        *windowed("fan-out 100 × 64 B", 100, 64),
        *windowed("fan-out 1000 × 64 B", 1000, 64),
        *windowed("fan-out 100 × 16 KiB", 100, 16 * 1024),
        Scenario("idle 5000 connections", "idle", 5000),
        Scenario("storm: 5000 connect at once", "idle", 5000, concurrency=5000),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run (seconds)")
    parser.add_argument("--duration", type=float, default=None, help="measured seconds per run")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated servers")
    parser.add_argument("--only", default="", help="run scenarios whose name contains this")
    parser.add_argument("--json", type=Path, help="also write raw results here")
    parser.add_argument(
        "--window",
        type=int,
        default=None,
        metavar="N",
        help="messages in flight per publisher in every fan-out row (default: each row's own)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="the wss:// rows instead: ours and websockets over TLS (a certificate per run)",
    )
    parser.add_argument(
        "--stuck",
        action="store_true",
        help="the stuck-clients rows instead: peak RSS while clients never read",
    )
    parser.add_argument(
        "--http",
        action="store_true",
        help="the HTTP publish rows instead: POST /ROOM over keep-alive, beside a WebSocket",
    )
    parser.add_argument(
        "--redis",
        action="store_true",
        help="the Redis rows instead: ours with and without --redis (needs redis-server)",
    )
    parser.add_argument(
        "--compression",
        action="store_true",
        help="the compression rows instead: a room of chat JSON to 1,000 clients that offer "
        "permessage-deflate, ours off/stateless/room beside websockets' default deflate",
    )
    args = parser.parse_args()

    if args.compression:  # benchmarks/compression.py has the knobs (clients, rate, rows)
        argv = ["--quick"] if args.quick else []
        return compression.main([*argv, *(["--json", str(args.json)] if args.json else [])])
    if not shutil.which("node") or not (HERE / "node_modules" / "ws").is_dir():
        print("needs node and `npm ci --prefix benchmarks` (nox -s bench does it)", file=sys.stderr)
        return 2
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    servers = [s for s in args.servers.split(",") if s and s != "ours-redis"]
    scenarios = [s for s in scenarios_for(args.quick) if args.only in s.name]
    if args.tls:
        global TLS_FILES
        TLS_FILES = make_certificate(Path(tempfile.mkdtemp(prefix="bench-tls-")))
        servers = ["ours", "websockets"]
        scenarios = [s for s in tls_scenarios() if args.only in s.name]
    if args.stuck:
        servers = [s for s in servers if s in ("ours", "websockets", "node")]
        scenarios = [s for s in stuck_scenarios() if args.only in s.name]
    if args.redis:
        if not shutil.which("redis-server"):
            print("--redis needs redis-server (apt-get install redis-server)", file=sys.stderr)
            return 2
        servers = ["ours", "ours-redis"]
        scenarios = [s for s in redis_scenarios() if args.only in s.name]
    if args.http:
        duration = args.duration or (1.0 if args.quick else 5.0)
        pinned(LOADGEN_CORE)()  # this process publishes and listens; the server has core 0
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}; server pinned to core {SERVER_CORE}, publisher and "
            f"listener to core {LOADGEN_CORE}; {duration:g} s measured per row; 64 B messages"
        )
        print(publish_http.table(publish_http.run_http_rows(duration, pinned(SERVER_CORE))))
        return 0
    if args.window is not None:
        if args.window < 1:
            print("--window needs at least 1 message in flight", file=sys.stderr)
            return 2
        unique = {with_window(s, args.window).name: with_window(s, args.window) for s in scenarios}
        scenarios = list(unique.values())
    duration = args.duration or (1.0 if args.quick else 5.0)
    warmup = 0.5 if args.quick else 1.0

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"node {subprocess.run(['node', '--version'], capture_output=True, text=True).stdout.strip()}; "
        f"server pinned to core {SERVER_CORE}, load generator to core {LOADGEN_CORE}; "
        f"{duration:g} s measured per run",
        flush=True,
    )
    results = []
    for scenario in scenarios:
        for server in servers:
            if scenario.servers is not None and server not in scenario.servers:
                continue
            print(f"running {scenario.name} against {server} ...", file=sys.stderr, flush=True)
            results.append(run_scenario(server, scenario, duration, warmup))
    print(report(results, scenarios, servers))
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
