"""The "stuck clients" row: clients that finish the handshake and never read.

N raw clients (4 KiB receive buffers) open a WebSocket and then read nothing,
while one publisher floods 64 KiB binary messages for ``seconds`` (and reads
its own copies back, so that it is never the stuck one). A server that keeps
one queue of copies per client grows by N times what it cannot write; one that
shares each encoded frame by reference and bounds each client's backlog stays
flat. Reported: the server's peak RSS (``VmHWM``), messages the publisher got
out, and whether the stuck clients were closed.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.parse

from harness import sample

UPGRADE = (
    "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def _open(host: str, port: int, receive_buffer: int | None = None) -> socket.socket:
    sock = socket.socket()
    if receive_buffer is not None:  # before connect, so the TCP window stays small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect((host, port))
    sock.sendall(UPGRADE.format(host=f"{host}:{port}").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1 if receive_buffer else 4096)  # stuck ones: read no frame bytes
        if not chunk:
            raise ConnectionError("closed during the handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head.split(b"\r\n")[0].decode())
    return sock


def _masked_binary(payload: bytes) -> bytes:
    key = os.urandom(4)
    header = bytes([0x82, 0x80 | 127]) + len(payload).to_bytes(8, "big") + key
    mask = (key * (len(payload) // 4 + 1))[: len(payload)]
    return header + (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(
        len(payload), "big"
    )


def run_stuck(url: str, pid: int, clients: int, seconds: float) -> dict[str, float | int | None]:
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    stuck = [_open(host, port, receive_buffer=4096) for _ in range(clients)]
    publisher = _open(host, port)
    stop = threading.Event()

    def drain() -> None:  # the publisher reads its own copies, so it is never stuck
        publisher.settimeout(0.5)
        while not stop.is_set():
            try:
                if not publisher.recv(1 << 20):
                    return
            except TimeoutError:
                continue
            except OSError:
                return

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    frame = _masked_binary(os.urandom(64 * 1024))
    sent = 0
    start = time.monotonic()
    try:
        while time.monotonic() - start < seconds:
            publisher.sendall(frame)
            sent += 1
    except OSError:
        pass
    elapsed = time.monotonic() - start
    peak = sample(pid).peak_rss_bytes / 2**20
    closed = 0
    for sock in stuck:  # closed by the server (a 1008, then FIN or RST)?
        sock.setblocking(False)
        try:
            for _ in range(16):  # what the kernel holds, then the end if the server closed
                if not sock.recv(1 << 20):
                    closed += 1
                    break
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    stop.set()
    reader.join()
    for sock in [*stuck, publisher]:
        sock.close()
    return {
        "peak_rss_mib": peak,
        "messages_sent": sent,
        "sent_per_s": sent / elapsed,
        "stuck_closed": closed,
        "stuck": clients,
    }
