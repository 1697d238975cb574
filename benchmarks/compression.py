"""A room of chat JSON to clients that offer permessage-deflate: bytes and CPU per delivery.

    python benchmarks/compression.py [--quick] [--clients 1000] [--messages 600]
        [--rate 30] [--rows off,stateless,room,websockets,websockets-none]
        [--verify 5] [--json PATH] [--sample]

``nox -s bench -- --compression`` runs it (``bench.py --compression``). One row
per server, each a fresh process pinned to core 0 while this process (every
client and the publisher) runs on core 1:

- ``off``, ``stateless``, ``room``: ``python -m trio_ws_demo serve --compression MODE``;
- ``websockets``: the ``websockets`` asyncio baseline with its default
  compression (permessage-deflate with context takeover: one compressor per
  connection) and its ``broadcast()``;
- ``websockets-none``: the same without compression, the reference that its
  compression memory per connection is measured against (``off`` is ours).

*clients* raw sockets that offer ``permessage-deflate`` (as browsers, Node
``ws`` and ``websockets`` do) count the bytes and frames they read without
inflating, so client CPU stays out of the figures; the first *verify* of them
do inflate, and the run checks that they decoded every message, in order. One
publisher (offering nothing) sends *messages* chat messages at *rate* a second.
Server CPU comes from ``/proc/PID/stat`` over the publishing window only; peak
RSS is the server's ``VmHWM``. Memory per connection is the server's RSS with
every client connected (idle, before publishing; and again after it) less its
RSS before the first one, over *clients*; the compression share of it is that
less the same row without compression.

The messages are chat-sized JSON (about 137 bytes) of English text: sentences
from the standard library's docstrings, each used once, so the room
compressor's window holds no repeated sentence (``--sample`` prints a few).

Run it from a directory without a ``trio_ws_demo`` folder when ``PYTHONPATH``
names the tree to measure: ``python -m`` puts the working directory first.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import random
import re
import resource
import sys
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import OUR_SERVER, ProcSample, sample, start_server

HERE = Path(__file__).resolve().parent
SERVER_CORE, LOADGEN_CORE = 0, 1
_WEBSOCKETS = [sys.executable, str(HERE / "baselines" / "websockets_asyncio.py")]
#: Row name -> (label, server command line, the row its compression memory is measured against).
ROWS: dict[str, tuple[str, list[str], str]] = {
    "off": ("ours off", [*OUR_SERVER, "--max-clients", "100000", "--compression", "off"], "off"),
    "stateless": (
        "ours stateless",
        [*OUR_SERVER, "--max-clients", "100000", "--compression", "stateless"],
        "off",
    ),
    "room": ("ours room", [*OUR_SERVER, "--max-clients", "100000", "--compression", "room"], "off"),
    "websockets": (
        "websockets (default deflate)",
        [*_WEBSOCKETS, "--compression", "deflate"],
        "websockets-none",
    ),
    "websockets-none": (
        "websockets, no compression",
        [*_WEBSOCKETS, "--compression", "none"],
        "websockets-none",
    ),
}

_MODULES = [
    "argparse",
    "asyncio",
    "ast",
    "collections",
    "configparser",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "email",
    "enum",
    "fractions",
    "ftplib",
    "functools",
    "http.client",
    "http.server",
    "imaplib",
    "inspect",
    "ipaddress",
    "json",
    "logging",
    "mailbox",
    "multiprocessing",
    "optparse",
    "pathlib",
    "pickle",
    "poplib",
    "shutil",
    "smtplib",
    "socket",
    "sqlite3",
    "ssl",
    "statistics",
    "string",
    "subprocess",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "typing",
    "unittest",
    "urllib.request",
    "uuid",
    "xml.dom.minidom",
    "zipfile",
]
_USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]


def sentences() -> list[str]:
    """English sentences of 25 to 110 characters from stdlib docstrings, sorted."""
    found: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in _MODULES:
            module = importlib.import_module(name)
            # Not the submodules it happens to hold: which are imported depends on
            # the caller (bench.py imports more), and the corpus must not.
            attributes = [getattr(module, a, None) for a in dir(module)]
            objects = [module] + [a for a in attributes if not isinstance(a, ModuleType)]
            for obj in objects:
                doc = getattr(obj, "__doc__", None)
                if not isinstance(doc, str):
                    continue
                for sentence in re.split(r"(?<=[.!?])\s+", " ".join(doc.split())):
                    if 25 <= len(sentence) <= 110 and re.fullmatch(r"[A-Za-z ,.'!?-]+", sentence):
                        found.add(sentence)
    return sorted(found)


def chat_messages(count: int, seed: int = 1) -> list[bytes]:
    """*count* chat messages, each sentence used once (cycled if count is larger)."""
    pool = sentences()
    rng = random.Random(seed)
    rng.shuffle(pool)
    return [
        json.dumps(
            {
                "type": "chat",
                "room": "lobby",
                "user": rng.choice(_USERS),
                "id": 100_000 + n,
                "text": pool[n % len(pool)],
                "ts": 1_700_000_000 + 7 * n,
            },
            separators=(",", ":"),
        ).encode()
        for n in range(count)
    ]


def _masked(payload: bytes) -> bytes:
    key = os.urandom(4)
    length = len(payload)
    header = (
        bytes([0x81, 0x80 | length])
        if length < 126
        else bytes([0x81, 0xFE]) + length.to_bytes(2, "big")
    )
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


_REQUEST = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
)
_PLAIN_REQUEST = _REQUEST.replace(b"Sec-WebSocket-Extensions", b"X-None")


class Counter:
    """Counts the frames and bytes one client reads, by their headers alone;
    with *verify*, also inflates each message (RFC 7692 §7.2.2), to be compared
    with what was published."""

    def __init__(self, verify: bool = False) -> None:
        self.frames = 0
        self.bytes = 0
        self.compressed = 0
        self.negotiated = False
        self.decoded: list[bytes] | None = [] if verify else None
        # A 2^15 window reads any smaller one; one inflater for the whole
        # connection reads context takeover and independent messages alike.
        self._inflater = zlib.decompressobj(wbits=-15)
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self.bytes += len(data)
        buffer = self._buffer
        buffer += data
        at, end = 0, len(buffer)
        while end - at >= 2:
            short = buffer[at + 1] & 0x7F
            start = 2 if short < 126 else 4 if short == 126 else 10
            if end - at < start:
                break
            length = short if short < 126 else int.from_bytes(buffer[at + 2 : at + start], "big")
            if end - at < start + length:
                break
            if buffer[at] & 0x0F in (1, 2):
                compressed = bool(buffer[at] & 0x40)
                self.frames += 1
                self.compressed += compressed
                if self.decoded is not None:
                    payload = bytes(buffer[at + start : at + start + length])
                    if compressed:
                        payload = self._inflater.decompress(payload + b"\x00\x00\xff\xff")
                    self.decoded.append(payload)
            at += start + length
        del buffer[:at]


async def _handshake(stream: trio.SocketStream, request: bytes) -> tuple[bytes, bytes]:
    """Send *request*; return the 101's head and whatever came after it."""
    await stream.send_all(request)
    head = b""
    while b"\r\n\r\n" not in head:
        data = await stream.receive_some(65536)
        if not data:
            raise ConnectionError("closed during the handshake")
        head += data
    head, _, rest = head.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head.split(b"\r\n")[0].decode())
    return head, rest


async def _client(
    host: str,
    port: int,
    counter: Counter,
    expected: int,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    async with await trio.open_tcp_stream(host, port) as stream:
        head, rest = await _handshake(stream, _REQUEST)
        counter.negotiated = b"permessage-deflate" in head.lower()
        counter.feed(rest)
        task_status.started()
        while counter.frames < expected:
            data = await stream.receive_some(65536)
            if not data:
                break
            counter.feed(data)
        await trio.sleep_forever()  # stay connected until the row is over (the RSS after it)


async def _drain(stream: trio.SocketStream) -> None:
    while await stream.receive_some(65536):
        pass


async def _all_read(counters: list[Counter], expected: int, bound: float = 120) -> None:
    """Until every client has read every frame, or *bound* seconds (a row ends by itself)."""
    with trio.move_on_after(bound):
        while any(c.frames < expected for c in counters):  # noqa: ASYNC110 (no event to wait on)
            await trio.sleep(0.05)


@dataclass
class Samples:
    """The server's /proc at each stage of a row, and this process's CPU meanwhile."""

    start: ProcSample | None = None
    idle: ProcSample | None = None
    before: ProcSample | None = None
    after: ProcSample | None = None
    seconds: float = 0.0
    loadgen_cpu: float = 0.0
    counters: list[Counter] = field(default_factory=list)


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _measure(
    pid: int, host: str, port: int, clients: int, messages: list[bytes], rate: float, verify: int
) -> Samples:
    """Connect *clients* one after the other, then publish *messages* at *rate*."""
    samples = Samples(start=sample(pid))
    samples.counters = [Counter(verify=n < verify) for n in range(clients)]
    async with trio.open_nursery() as nursery:
        for counter in samples.counters:
            await nursery.start(_client, host, port, counter, len(messages))
        # Every 101 is out; give the server a moment to finish its bookkeeping
        # of the last ones before reading its RSS (a figure, not an ordering).
        await trio.sleep(0.5)
        samples.idle = sample(pid)
        publisher = await trio.open_tcp_stream(host, port)
        await _handshake(publisher, _PLAIN_REQUEST)
        nursery.start_soon(_drain, publisher)  # it may get every message too (not counted)
        samples.before, own, started = sample(pid), _own_cpu(), trio.current_time()
        for n, message in enumerate(messages):
            await publisher.send_all(_masked(message))
            await trio.sleep_until(started + (n + 1) / rate)
        await _all_read(samples.counters, len(messages))
        samples.after = sample(pid)
        samples.seconds = trio.current_time() - started
        samples.loadgen_cpu = _own_cpu() - own
        nursery.cancel_scope.cancel()
    return samples


def pinned(core: int) -> Callable[[], None]:
    def pin() -> None:
        if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
            os.sched_setaffinity(0, {core})

    return pin


Numbers = dict[str, float]


def run_row(row: str, clients: int, messages: list[bytes], rate: float, verify: int) -> Numbers:
    """One fresh server for *row*, measured; it is stopped before this returns."""
    process, url = start_server(ROWS[row][1], pinned(SERVER_CORE))
    try:
        host, _, port = url.split("://", 1)[1].split("/")[0].rpartition(":")
        samples = trio.run(_measure, process.pid, host, int(port), clients, messages, rate, verify)
    finally:
        process.kill()
        process.wait()
    assert samples.start and samples.idle and samples.before and samples.after
    counters = samples.counters
    deliveries = sum(c.frames for c in counters)
    raw = sum(len(m) + (2 if len(m) < 126 else 4) for m in messages) * clients
    cpu = samples.after.cpu_seconds - samples.before.cpu_seconds
    checked = [c for c in counters if c.decoded is not None]
    return {
        "deliveries": deliveries,
        "lost": len(messages) * clients - deliveries,
        "negotiated": sum(c.negotiated for c in counters),
        "bytes_per_delivery": sum(c.bytes for c in counters) / max(1, deliveries),
        "raw_bytes_per_delivery": raw / len(messages) / clients,
        "compressed_share": sum(c.compressed for c in counters) / max(1, deliveries),
        "server_cpu_s": cpu,
        "cpu_us_per_delivery": cpu / max(1, deliveries) * 1e6,
        "deliveries_per_cpu_s": deliveries / cpu if cpu > 0 else 0.0,
        "server_cpu_pct": 100 * cpu / samples.seconds,
        "loadgen_cpu_pct": 100 * samples.loadgen_cpu / samples.seconds,
        "peak_rss_mib": samples.after.peak_rss_bytes / 2**20,
        "idle_kib_per_conn": (samples.idle.rss_bytes - samples.start.rss_bytes) / clients / 1024,
        "after_kib_per_conn": (samples.after.rss_bytes - samples.start.rss_bytes) / clients / 1024,
        "verified": len(checked),
        "verified_ok": sum(c.decoded == messages for c in checked),
    }


def table(results: dict[str, Numbers]) -> str:
    """The two Markdown tables: the wire and the CPU; memory per connection."""
    off = results.get("off", {}).get("cpu_us_per_delivery")
    lines = [
        "| server | bytes on the wire per delivery | of raw | compressed frames"
        " | deliveries per server CPU-s | CPU per delivery | vs ours off | server peak RSS MiB"
        " | server CPU % | loadgen CPU % | lost | decoded OK |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row, n in results.items():
        versus = f"{n['cpu_us_per_delivery'] / off:.2f}×" if off else "–"
        lines.append(
            f"| {ROWS[row][0]} | {n['bytes_per_delivery']:.1f}"
            f" | {n['bytes_per_delivery'] / n['raw_bytes_per_delivery']:.1%}"
            f" | {n['compressed_share']:.0%} | {n['deliveries_per_cpu_s']:,.0f}"
            f" | {n['cpu_us_per_delivery']:.2f} µs | {versus} | {n['peak_rss_mib']:.1f}"
            f" | {n['server_cpu_pct']:.0f} | {n['loadgen_cpu_pct']:.0f} | {n['lost']:.0f}"
            f" | {n['verified_ok']:.0f} of {n['verified']:.0f} |"
        )
    lines += [
        "",
        "| server | RSS per connection, idle | after publishing | compression memory per"
        " connection (idle / after) | measured against |",
        "|---|---:|---:|---:|---|",
    ]
    for row, n in results.items():
        reference = ROWS[row][2]
        base = results.get(reference)
        if reference == row:
            extra = "(the reference)"
        elif base is None:
            extra = "– (run its reference row too)"
        else:
            extra = (
                f"{n['idle_kib_per_conn'] - base['idle_kib_per_conn']:+.2f} KiB / "
                f"{n['after_kib_per_conn'] - base['after_kib_per_conn']:+.2f} KiB"
            )
        lines.append(
            f"| {ROWS[row][0]} | {n['idle_kib_per_conn']:.2f} KiB | {n['after_kib_per_conn']:.2f} KiB"
            f" | {extra} | {ROWS[reference][0]} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="20 clients, 50 messages (a smoke run)"
    )
    parser.add_argument("--clients", type=int, default=None, help="default 1000 (20 with --quick)")
    parser.add_argument("--messages", type=int, default=None, help="default 600 (50 with --quick)")
    parser.add_argument("--rate", type=float, default=None, help="messages a second (default 30)")
    parser.add_argument(
        "--rows", default=",".join(ROWS), help="comma-separated, of: " + ", ".join(ROWS)
    )
    parser.add_argument("--verify", type=int, default=5, help="clients that inflate and check")
    parser.add_argument("--json", type=Path, help="also write raw results here")
    parser.add_argument("--sample", action="store_true", help="print a few messages and exit")
    args = parser.parse_args(argv)
    clients = args.clients or (20 if args.quick else 1000)
    count = args.messages or (50 if args.quick else 600)
    rate = args.rate or (100.0 if args.quick else 30.0)
    rows = [r for r in args.rows.split(",") if r]
    unknown = [r for r in rows if r not in ROWS]
    if unknown or clients < 1 or count < 1 or rate <= 0:
        print(f"--rows is a list of {', '.join(ROWS)}; counts and --rate above 0", file=sys.stderr)
        return 2
    messages = chat_messages(count)
    if args.sample:
        for message in messages[:3]:
            print(message.decode())
        print(f"mean {sum(map(len, messages)) / len(messages):.1f} bytes")
        return 0
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    pinned(LOADGEN_CORE)()
    load = os.getloadavg()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()};"
        f" server pinned to core {SERVER_CORE}, clients and publisher to core {LOADGEN_CORE};"
        f" {clients} clients offering permessage-deflate, {count} chat messages"
        f" ({sum(map(len, messages)) / count:.1f} bytes on average) at {rate:g}/s;"
        f" load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        flush=True,
    )
    results = {}
    for row in rows:
        print(f"running {ROWS[row][0]} ...", file=sys.stderr, flush=True)
        results[row] = run_row(row, clients, messages, rate, min(args.verify, clients))
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
