"""The access log: one line per HTTP request on ``trio_ws_demo.access``, with a real
server on a real socket (issue 29, item 6).

Each answer's line carries the client, the method, the redacted target, the
status, the bytes written and the duration; the upgrade is a request too
(101); probes that succeed go to DEBUG; ``--access-log off`` writes none.
"""

from __future__ import annotations

import json
import logging

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request

from trio_ws_demo import AccessPolicy, ServerOptions

from .conftest import StartServer
from .processes import listening_port, run_cli
from .rigs import LogWatch
from .wsraw import RawClient, http_exchange

TIMEOUT = 20
SECRET = "s3cr3t-access-token"


def access_lines(
    records: list[logging.LogRecord], level: int = logging.INFO
) -> list[logging.LogRecord]:
    return [r for r in records if r.name == "trio_ws_demo.access" and r.levelno == level]


def get(target: str, method: str = "GET", *extra: str) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def post(target: str, body: bytes) -> bytes:
    return (
        f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


async def open_websocket(port: int, target: str) -> RawClient:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    client = RawClient(stream)
    client.ws = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(client.ws.send(Request(host="127.0.0.1", target=target)))
    assert isinstance(await client.next_event(), AcceptConnection)
    return client


async def test_one_line_per_request_each_with_its_status_bytes_and_time(
    start_server: StartServer,
) -> None:
    with LogWatch() as log:
        await one_line_per_request(start_server, log)


async def one_line_per_request(start_server: StartServer, log: LogWatch) -> None:
    server = await start_server(
        ServerOptions(access=AccessPolicy(token=SECRET), max_clients=1, max_message_size=64)
    )
    assert server.port is not None
    bearer = f"Authorization: Bearer {SECRET}"
    with trio.fail_after(TIMEOUT):
        answers = {
            "page": await http_exchange(server.port, get("/lobby")),
            "head": await http_exchange(server.port, get("/lobby", "HEAD")),
            "missing": await http_exchange(server.port, get("/a//b?token=" + SECRET)),
            "delete": await http_exchange(server.port, get("/rooms", "DELETE")),
            "publish": await http_exchange(server.port, post(f"/lobby?token={SECRET}", b"hi")),
            "too big": await http_exchange(server.port, post(f"/lobby?token={SECRET}", b"x" * 65)),
            "huge head": await http_exchange(server.port, get("/", "GET", "X: " + "y" * 20_000)),
            "probe": await http_exchange(server.port, get("/livez")),
            "rooms": await http_exchange(server.port, get("/rooms", "GET", bearer)),
        }
        client = await open_websocket(server.port, f"/lobby?token={SECRET}")
        await log.until(lambda records: len(access_lines(records)) == 9)  # its 101 line
        full = await http_exchange(
            server.port,
            get(f"/lobby?token={SECRET}", "GET", "Upgrade: websocket", "Connection: Upgrade",
                "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="),
        )  # fmt: skip
        await log.until(lambda records: len(access_lines(records)) == 10)
        await client.stream.aclose()
    lines = access_lines(log.records)
    seen = [(r.method, r.path, r.status) for r in lines]  # type: ignore[attr-defined]
    assert seen == [
        ("GET", "/lobby", 200),
        ("HEAD", "/lobby", 200),
        ("GET", "/a//b?token=***", 404),
        ("DELETE", "/rooms", 405),
        ("POST", "/lobby?token=***", 200),
        ("POST", "/lobby?token=***", 413),
        ("-", "-", 431),
        ("GET", "/rooms", 200),
        ("GET", "/lobby?token=***", 101),
        ("GET", "/lobby?token=***", 503),  # max_clients=1: the second WebSocket
    ], seen
    by_status = {r.status: r for r in lines}  # type: ignore[attr-defined]
    assert lines[0].bytes == len(answers["page"])  # type: ignore[attr-defined]
    assert lines[1].bytes == len(answers["head"]) < lines[0].bytes  # type: ignore[attr-defined]
    assert by_status[503].bytes == len(full)  # type: ignore[attr-defined]
    assert full.startswith(b"HTTP/1.1 503 ")
    assert by_status[101].bytes > len("HTTP/1.1 101 Switching Protocols\r\n")  # type: ignore[attr-defined]
    for record in lines:
        assert record.peer.startswith("127.0.0.1:")  # type: ignore[attr-defined]
        assert record.duration_ms >= 0  # type: ignore[attr-defined]
        assert record.event == "access"  # type: ignore[attr-defined]
        assert SECRET not in record.getMessage()
    assert '"POST /lobby?token=***" 200' in lines[4].getMessage()
    # The probe: a line, at DEBUG (a load balancer asks every few seconds).
    probes = [r for r in access_lines(log.records, logging.DEBUG) if r.path == "/livez"]  # type: ignore[attr-defined]
    assert len(probes) == 1 and probes[0].status == 200  # type: ignore[attr-defined]
    assert all(SECRET not in r.getMessage() for r in log.records)


async def test_access_log_off_writes_no_line(start_server: StartServer) -> None:
    server = await start_server(ServerOptions(access_log=False))
    assert server.port is not None
    with trio.fail_after(TIMEOUT), LogWatch() as log:
        await http_exchange(server.port, get("/"))
        await http_exchange(server.port, get("/a//b"))
        await http_exchange(server.port, post("/lobby", b"hi"))
        client = await open_websocket(server.port, "/lobby")
        await log.until(lambda records: any(getattr(r, "event", "") == "opened" for r in records))
        await client.stream.aclose()
    assert [r for r in log.records if r.name == "trio_ws_demo.access"] == []


async def test_json_access_lines_carry_the_fields_and_off_turns_them_off() -> None:
    with trio.fail_after(TIMEOUT):
        for setting in ("on", "off"):
            async with run_cli(
                "serve", "--port", "0", "--log-format", "json", "--access-log", setting
            ) as server:
                port = await listening_port(server)
                await http_exchange(port, get("/lobby?token=" + SECRET))
                await http_exchange(port, post("/lobby", b"hello"))
                server.interrupt()
                assert await server.process.wait() == 0
                records = [json.loads(line) for line in (await server.stderr()).splitlines()]
            access = [r for r in records if r["logger"] == "trio_ws_demo.access"]
            if setting == "off":
                assert access == []
                continue
            page, published = access
            assert page["event"] == "access" and page["level"] == "info"
            assert page["method"] == "GET" and page["path"] == "/lobby?token=***"
            assert page["status"] == 200 and page["bytes"] > 1000
            assert isinstance(page["duration_ms"], float) and page["duration_ms"] >= 0
            assert page["peer"].startswith("127.0.0.1:") and "proxy" not in page
            assert (published["method"], published["status"]) == ("POST", 200)
            assert SECRET not in json.dumps(records)
