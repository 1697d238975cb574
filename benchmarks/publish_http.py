"""The HTTP publish rows: ``POST /<room>`` over one keep-alive connection, one
message per request and ndjson batches, beside the same messages sent over one
WebSocket connection (the baseline: what a backend would otherwise do), in one
run, against one server process pinned to its own core.

A raw WebSocket listener in the room counts every delivery, so a row counts
only messages that reached a client. Reported: messages/s, messages per server
CPU-second, and the ratio to the WebSocket row.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from harness import OUR_SERVER, sample, start_server
from stuck import _open

MESSAGE = b"x" * 64


@dataclass
class Row:
    name: str
    messages: int
    seconds: float
    cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def per_cpu(self) -> float:
        return self.messages / self.cpu_seconds if self.cpu_seconds else float("nan")


class Listener(threading.Thread):
    """Counts the frames the server sends one raw WebSocket client."""

    def __init__(self, host: str, port: int, room: str) -> None:
        super().__init__(daemon=True)
        self.sock = _open(host, port)
        self.sock.sendall(b"")  # (the upgrade went to "/": rooms come from the path)
        self.count = 0
        self.room = room

    def run(self) -> None:
        buffer = b""
        while True:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return
            buffer += chunk
            while len(buffer) >= 2:
                length = buffer[1] & 0x7F
                start = 2 + (2 if length == 126 else 8 if length == 127 else 0)
                if length >= 126:
                    if len(buffer) < start:
                        break
                    length = int.from_bytes(buffer[2:start], "big")
                if len(buffer) < start + length:
                    break
                buffer = buffer[start + length :]
                self.count += 1


def _masked_binary(payload: bytes) -> bytes:
    """A client's binary frame (payload under 126 bytes: the 7-bit length)."""
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([0x82, 0x80 | len(payload)]) + key + masked


def _drain(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while sock.recv(1 << 20):
            pass


def _http(sock: socket.socket, path: str, body: bytes, kind: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {kind}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _read_response(sock: socket.socket, pending: bytearray) -> None:
    while b"\r\n\r\n" not in pending:
        pending += sock.recv(65536)
    head, _, rest = bytes(pending).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.split(b"\r\n")[0].decode())
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(rest) < length:
        rest += sock.recv(65536)
    pending[:] = rest[length:]


def _measure(
    pid: int, listener: Listener, seconds: float, step: Callable[[], int]
) -> tuple[int, float, float]:
    """Run *step* (one request or frame batch; returns messages in it) for *seconds*;
    wait until the listener has them all."""
    before_cpu, before_count = sample(pid).cpu_seconds, listener.count
    sent = 0
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        sent += step()
    while listener.count - before_count < sent:
        time.sleep(0.001)
    elapsed = time.monotonic() - started
    return sent, elapsed, sample(pid).cpu_seconds - before_cpu


def run_http_rows(seconds: float, pin: Callable[[], None] | None = None) -> list[Row]:
    process, url = start_server([*OUR_SERVER], pin)
    try:
        host, port = url.removeprefix("ws://").split(":")
        listener = Listener(host, int(port), "")
        listener.start()
        rows = []
        # Baseline: one WebSocket connection sending one message per frame.
        ws = _open(host, int(port))
        frame = _masked_binary(MESSAGE)
        threading.Thread(target=_drain, args=(ws,), daemon=True).start()  # its own copies

        def websocket_step() -> int:
            ws.sendall(frame * 100)
            while listener.count < websocket_step.total:  # type: ignore[attr-defined]
                time.sleep(0)  # keep the window small: the server must keep up
            return 100

        websocket_step.total = 0  # type: ignore[attr-defined]

        def websocket_paced() -> int:
            websocket_step.total = listener.count + 100  # type: ignore[attr-defined]
            return websocket_step()

        sent, elapsed, cpu = _measure(process.pid, listener, seconds, websocket_paced)
        rows.append(Row("WebSocket, 1 message per frame (baseline)", sent, elapsed, cpu))
        ws.close()
        for name, per_request, kind in [
            ("HTTP POST, 1 message per request", 1, "application/octet-stream"),
            ("HTTP POST, ndjson, 100 per request", 100, "application/x-ndjson"),
            ("HTTP POST, ndjson, 1000 per request", 1000, "application/x-ndjson"),
        ]:
            sock = socket.create_connection((host, int(port)))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            body = MESSAGE if per_request == 1 else (MESSAGE + b"\n") * per_request
            request = _http(sock, "/", body, kind)
            pending = bytearray()

            def http_step(request: bytes = request, sock: socket.socket = sock,
                          n: int = per_request, pending: bytearray = pending) -> int:  # fmt: skip
                sock.sendall(request)
                _read_response(sock, pending)
                return n

            sent, elapsed, cpu = _measure(process.pid, listener, seconds, http_step)
            rows.append(Row(name, sent, elapsed, cpu))
            sock.close()
        return rows
    finally:
        process.terminate()
        process.wait(timeout=20)


def table(rows: list[Row]) -> str:
    base = rows[0]
    lines = [
        "| how | messages/s | messages/server CPU-s | ÷ WebSocket (per CPU-s) |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.name} | {row.rate:,.0f} | {row.per_cpu:,.0f} | "
            f"{row.per_cpu / base.per_cpu:.2f}× |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(run_http_rows(float(os.environ.get("SECONDS", "3")))))
