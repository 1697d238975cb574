"""Bytes and server CPU per delivery with ``--compression off|stateless|room``.

    python benchmarks/compression.py [--clients 100] [--messages 2000] [--rate 400]
                                     [--modes off,stateless,room] [--sample]

For each mode, a fresh ``python -m trio_ws_demo serve --compression MODE``
process; *clients* raw sockets that offer ``permessage-deflate`` (as browsers,
Node ``ws`` and ``websockets`` do) and only count the bytes and frames they
read (no inflating: client CPU stays out of the server's figures); one
publisher sends *messages* chat messages at *rate* a second. Server CPU time
comes from ``/proc/PID/stat`` over the publishing window only.

The messages are chat-sized JSON (about 137 bytes) of English text: sentences
from the standard library's docstrings, each used once, so the room
compressor's window holds no repeated sentence (``--sample`` prints a few).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import re
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
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
            objects = [module] + [getattr(module, a, None) for a in dir(module)]
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


class Counter:
    """Counts the frames and bytes one client reads, by their headers alone."""

    def __init__(self) -> None:
        self.frames = 0
        self.bytes = 0
        self.compressed = 0
        self._buffer = b""

    def feed(self, data: bytes) -> None:
        self.bytes += len(data)
        buffer = self._buffer + data
        while len(buffer) >= 2:
            short = buffer[1] & 0x7F
            start = 2 if short < 126 else 4 if short == 126 else 10
            if len(buffer) < start:
                break
            length = short if short < 126 else int.from_bytes(buffer[2:start], "big")
            if len(buffer) < start + length:
                break
            if buffer[0] & 0x0F in (1, 2):
                self.frames += 1
                self.compressed += bool(buffer[0] & 0x40)
            buffer = buffer[start + length :]
        self._buffer = buffer


async def _client(port: int, expected: int, counters: list[Counter], ready: trio.Event) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(_REQUEST)
    head = b""
    while b"\r\n\r\n" not in head:
        head += await stream.receive_some(65536)
    head, _, rest = head.partition(b"\r\n\r\n")
    counter = Counter()
    counters.append(counter)
    if len(counters) == counters_wanted[0]:
        ready.set()
    counter.feed(rest)
    while counter.frames < expected:
        data = await stream.receive_some(65536)
        if not data:
            break
        counter.feed(data)
    await stream.aclose()


counters_wanted = [0]


async def _drain(stream: trio.SocketStream) -> None:
    while await stream.receive_some(65536):
        pass


async def _measure(
    pid: int, port: int, clients: int, messages: list[bytes], rate: float, counters: list[Counter]
) -> float:
    """Connect *clients*, publish *messages* at *rate*: the server's CPU seconds meanwhile."""
    counters_wanted[0] = clients
    ready = trio.Event()
    async with trio.open_nursery() as nursery:
        for _ in range(clients):
            nursery.start_soon(_client, port, len(messages), counters, ready)
        await ready.wait()
        publisher = await trio.open_tcp_stream("127.0.0.1", port)
        await publisher.send_all(_REQUEST.replace(b"Sec-WebSocket-Extensions", b"X-None"))
        nursery.start_soon(_drain, publisher)  # it gets every message too (not counted)
        before, started = _cpu(pid), trio.current_time()
        for n, message in enumerate(messages):
            await publisher.send_all(_masked(message))
            await trio.sleep_until(started + (n + 1) / rate)
        await ready_all(counters, len(messages))
        cpu = _cpu(pid) - before
        nursery.cancel_scope.cancel()
    return cpu


async def ready_all(counters: list[Counter], expected: int) -> None:
    """Until every client has read every frame (bounded: a run ends by itself)."""
    with trio.move_on_after(60):
        while any(c.frames < expected for c in counters):  # noqa: ASYNC110 (no event)
            await trio.sleep(0.05)


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_listening(port: int) -> None:
    """Until the server accepts connections (at most 20 s)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_mode(mode: str, clients: int, messages: list[bytes], rate: float) -> dict[str, float]:
    """One fresh server in *mode*, measured; it is stopped before this returns."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "trio_ws_demo", "serve", "--port", str(port), "--host", "127.0.0.1",
         "--compression", mode, "--max-message-rate", "0", "--log-level", "warning"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_listening(port)
        counters: list[Counter] = []
        cpu = trio.run(_measure, server.pid, port, clients, messages, rate, counters)
    finally:
        server.terminate()
        server.wait()
    deliveries = sum(c.frames for c in counters)
    raw = sum(len(m) + (2 if len(m) < 126 else 4) for m in messages) * clients
    return {
        "deliveries": deliveries,
        "bytes_per_delivery": sum(c.bytes for c in counters) / deliveries,
        "raw_bytes_per_delivery": raw / deliveries,
        "compressed_share": sum(c.compressed for c in counters) / deliveries,
        "cpu_us_per_delivery": cpu / deliveries * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=400.0, help="messages a second")
    parser.add_argument("--modes", default="off,stateless,room")
    parser.add_argument("--sample", action="store_true", help="print a few messages and exit")
    args = parser.parse_args()
    messages = chat_messages(args.messages)
    if args.sample:
        for message in messages[:3]:
            print(message.decode())
        print(f"mean {sum(map(len, messages)) / len(messages):.1f} bytes")
        return
    results = {}
    for mode in args.modes.split(","):
        results[mode] = run_mode(mode, args.clients, messages, args.rate)
    off = results.get("off")
    print(f"{'mode':<10} {'bytes/deliv':>12} {'of raw':>7} {'CPU us/deliv':>13} {'vs off':>7}")
    for mode, result in results.items():
        share = result["bytes_per_delivery"] / result["raw_bytes_per_delivery"]
        cpu = result["cpu_us_per_delivery"]
        versus = f"{cpu / off['cpu_us_per_delivery']:.2f}x" if off else "-"
        print(
            f"{mode:<10} {result['bytes_per_delivery']:>12.1f} {share:>7.1%} {cpu:>13.2f} {versus:>7}"
        )
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
