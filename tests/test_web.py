"""HTTP on the WebSocket port: the chat page, /healthz, /metrics, errors, JSON logs."""

from __future__ import annotations

import json

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus
from websockets.trio.client import connect

from trio_ws_demo import AccessPolicy, BroadcastServer, ServerOptions

from .conftest import StartServer, url_of
from .processes import run_cli
from .wsraw import http_exchange

TIMEOUT = 20


def split(response: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status_line, headers, body


async def get(
    server: BroadcastServer, path: str, method: str = "GET"
) -> tuple[str, dict[str, str], bytes]:
    request = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    return split(await http_exchange(server.port, request))


async def test_the_chat_page_is_served_at_the_root(server: BroadcastServer) -> None:
    with trio.fail_after(TIMEOUT):
        status, headers, body = await get(server, "/")
        head_status, head_headers, head_body = await get(server, "/", "HEAD")
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["connection"] == "close"
    assert b"<title>trio_ws_demo chat</title>" in body
    assert b"http://" not in body and b"https://" not in body  # no CDN, nothing external
    assert int(headers["content-length"]) == len(body)
    assert head_status == "HTTP/1.1 200 OK" and head_body == b""
    assert head_headers["content-length"] == headers["content-length"]


async def test_healthz_counts_connected_clients(server: BroadcastServer) -> None:
    with trio.fail_after(TIMEOUT):
        _, _, body = await get(server, "/healthz")
        instance = f"127.0.0.1:{server.port}"  # which process answered: its address
        assert json.loads(body) == {"status": "ok", "clients": 0, "instance": instance}
        async with connect(url_of(server), proxy=None), connect(url_of(server), proxy=None):
            status, headers, body = await get(server, "/healthz")
            assert status == "HTTP/1.1 200 OK"
            assert headers["content-type"] == "application/json"
            assert json.loads(body) == {"status": "ok", "clients": 2, "instance": instance}
            head_status, _, head_body = await get(server, "/healthz", "HEAD")
            assert head_status == "HTTP/1.1 200 OK" and head_body == b""


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /not//a%20room HTTP/1.1\r\nHost: x\r\n\r\n", "404 Not Found"),
        (b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", "405 Method Not Allowed"),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20_000 + b"\r\n\r\n",
            "431 Request Header Fields Too Large",
        ),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", "400 Bad Request"),
    ],
    ids=["unknown-path", "wrong-method", "head-too-large", "malformed"],
)
async def test_other_requests_get_errors_with_connection_close(
    server: BroadcastServer, request_bytes: bytes, status: str
) -> None:
    with trio.fail_after(TIMEOUT):
        status_line, headers, _ = split(await http_exchange(server.port, request_bytes))
    assert status_line == f"HTTP/1.1 {status}"
    assert headers["connection"] == "close"
    if status.startswith("405"):
        assert headers["allow"] == "GET, HEAD"


def metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_read_back_by_prometheus_client(start_server: StartServer) -> None:
    options = ServerOptions(access=AccessPolicy(allow_origins=frozenset({"https://ok.example"})))
    server = await start_server(options)
    url = url_of(server)
    with trio.fail_after(TIMEOUT):
        async with connect(url, proxy=None, origin="https://ok.example") as a:
            await a.send("hello")
            assert await a.recv() == "hello"
            with pytest.raises(InvalidStatus):
                async with connect(url, proxy=None, origin="https://evil.example"):
                    pass
            status, headers, body = await get(server, "/metrics")
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    m = metrics(body.decode())
    assert m[("trio_ws_demo_clients", ())] == 1
    assert m[("trio_ws_demo_connections_total", ())] == 1
    assert m[("trio_ws_demo_messages_received_total", ())] == 1
    assert m[("trio_ws_demo_received_bytes_total", ())] == 7  # 2-byte header + "hello"
    assert m[("trio_ws_demo_messages_delivered_total", ())] == 1
    assert m[("trio_ws_demo_delivered_bytes_total", ())] == 7
    assert m[("trio_ws_demo_slow_clients_closed_total", ())] == 0
    assert m[("trio_ws_demo_messages_dropped_total", ())] == 0
    assert m[("trio_ws_demo_handshake_rejections_total", (("reason", "origin not allowed"),))] == 1
    assert m[("trio_ws_demo_inbox_messages", ())] == 0
    assert ("trio_ws_demo_inbox_max_messages", ()) in m
    # The process collector: this process's own figures.
    assert m[("process_resident_memory_bytes", ())] > 1_000_000
    assert m[("process_open_fds", ())] > 3
    assert ("process_cpu_seconds_total", ()) in m


async def test_json_logs_one_line_per_lifecycle_event_and_never_the_token() -> None:
    secret = "very-secret-token"
    with trio.fail_after(TIMEOUT):
        async with run_cli(
            "serve", "--port", "0", "--log-format", "json", "--token", secret
        ) as server:
            port = int((await server.readline()).split()[2].rsplit(":", 1)[1])
            url = f"ws://127.0.0.1:{port}/room?token={secret}"
            async with run_cli("echo", url, "a", "b", "c", "--count", "10") as echo:
                assert await echo.process.wait() == 0
            server.interrupt()
            assert await server.process.wait() == 0
            log = await server.stderr()
    assert secret not in log
    records = [json.loads(line) for line in log.splitlines()]
    # The upgrade is an HTTP request too: its access line (101) comes first.
    assert [r["event"] for r in records] == ["access", "opened", "closed", "shutdown"]
    access, opened, closed = records[0], records[1], records[2]
    assert access["status"] == 101 and access["path"] == "/room?token=***"
    assert access["logger"] == "trio_ws_demo.access" and access["peer"] == opened["peer"]
    assert opened["path"] == "/room?token=***"
    assert closed["peer"] == opened["peer"] and closed["path"] == "/room?token=***"
    assert closed["code"] == 1000 and closed["reason"] is None
    # echo speaks v1: the joined frame, a presence frame, each echo and its ack.
    assert closed["messages_in"] == 30 and closed["messages_out"] == 1 + 1 + 30 + 30
    assert closed["slow"] is False and closed["duration_s"] >= 0
    assert all(r["level"] == "info" for r in records)


async def test_every_log_line_and_healthz_name_the_instance() -> None:
    from .processes import run_cli
    from .wsraw import http_exchange

    with trio.fail_after(TIMEOUT):
        async with run_cli(
            "serve", "--port", "0", "--instance", "eu-1", "--log-level", "debug"
        ) as serve:
            port = int((await serve.readline()).split()[2].rsplit(":", 1)[1])
            answer = await http_exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["instance"] == "eu-1"
            await http_exchange(port, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")  # one log line
            serve.interrupt()
            assert await serve.process.wait() == 0
            log = await serve.stderr()
        async with run_cli("serve", "--port", "0", "--log-format", "json") as unnamed:
            port = int((await unnamed.readline()).split()[2].rsplit(":", 1)[1])
            await http_exchange(port, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
            unnamed.interrupt()
            await unnamed.process.wait()
            records = [json.loads(line) for line in (await unnamed.stderr()).splitlines()]
    lines = log.splitlines()
    assert lines and all(" [eu-1] " in line for line in lines)
    assert records and all(r["instance"] == f"127.0.0.1:{port}" for r in records[1:])


async def test_every_error_answered_here_is_json_like_the_publish_errors(
    start_server: StartServer,
) -> None:
    open_server = await start_server()
    guarded = await start_server(ServerOptions(access=AccessPolicy(token="s3cret")))
    cases = [  # (server, method, path, status line, error)
        (open_server, "GET", "/not//a%20room", "HTTP/1.1 404 Not Found", "not found"),
        (open_server, "HEAD", "/not//a%20room", "HTTP/1.1 404 Not Found", None),
        (open_server, "PUT", "/", "HTTP/1.1 405 Method Not Allowed", "method not allowed"),
        (open_server, "GET", "/rooms/a//b", "HTTP/1.1 404 Not Found", "not a room"),
        (open_server, "GET", "/rooms?limit=0", "HTTP/1.1 400 Bad Request",
         "?limit= takes a number from 1 to 1000"),
        (open_server, "GET", "/rooms/r?limit=x", "HTTP/1.1 400 Bad Request",
         "?limit= takes a number from 1 to 1000"),
        (guarded, "GET", "/metrics", "HTTP/1.1 401 Unauthorized", "missing or wrong token"),
    ]  # fmt: skip
    with trio.fail_after(TIMEOUT):
        for server, method, path, status_line, error in cases:
            status, headers, body = await get(server, path, method)
            assert (status, headers["content-type"]) == (status_line, "application/json"), path
            if error is None:  # HEAD: the head only, as for the GET
                assert body == b"" and int(headers["content-length"]) > 0
            else:
                assert json.loads(body) == {"error": error}
                assert int(headers["content-length"]) == len(body)


async def test_rooms_pages_by_an_opaque_cursor_that_the_lobby_cannot_be_mistaken_for(
    start_server: StartServer,
) -> None:
    """The lobby is the room "": a page that ended with it said ``next: ""``,
    which read as "no more pages", and ``?after=`` (empty) was the first page
    again. ``next`` is now a token; no cursor is the first page."""
    server = await start_server(ServerOptions(history=1))
    for name in ("", "a", "after", "b"):
        server.broadcast("kept", room=name)

    async def page(query: str) -> tuple[str, dict[str, object]]:
        status, _, body = await get(server, f"/rooms{query}")
        return status, json.loads(body)

    with trio.fail_after(TIMEOUT):
        seen: list[object] = []
        cursors: list[object] = []
        _, answer = await page("?limit=1")
        for _ in range(6):  # 4 rooms: a cursor that went round would go on for ever
            seen += [room["room"] for room in answer["rooms"]]  # type: ignore[attr-defined]
            if answer["next"] is None:
                break
            cursors.append(answer["next"])
            _, answer = await page(f"?limit=1&cursor={answer['next']}")
        _, two = await page("?limit=2")
        _, rest = await page(f"?cursor={two['next']}")
        refused = [await page(query) for query in ("?cursor=", "?cursor=nonsense", "?after=a")]
    assert seen == ["", "a", "after", "b"]
    assert all(isinstance(cursor, str) and cursor for cursor in cursors)
    assert [room["room"] for room in rest["rooms"]] == ["after", "b"]  # type: ignore[attr-defined]
    assert rest["next"] is None and rest["total"] == 4
    assert [status for status, _ in refused] == ["HTTP/1.1 400 Bad Request"] * 3
    assert all(set(answer) == {"error"} for _, answer in refused)


async def test_posted_messages_are_counted_in_the_metrics(start_server: StartServer) -> None:
    server = await start_server()
    with trio.fail_after(TIMEOUT):
        for body, kind in ((b"one", "text/plain"), (b"a\nb\n\nc\n", "application/x-ndjson")):
            request = (
                f"POST /feed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode() + body
            assert split(await http_exchange(server.port, request))[0] == "HTTP/1.1 200 OK"
        _, _, body = await get(server, "/metrics")
    m = metrics(body.decode())
    assert m[("trio_ws_demo_http_published_total", ())] == 4
    assert m[("trio_ws_demo_messages_received_total", ())] == 0  # from WebSocket clients


async def test_a_refused_upgrade_answers_json_too(start_server: StartServer) -> None:
    """Issue 28: every HTTP error body is JSON, the front door's refusals too
    (they were "401 missing or wrong token" as text); echo still says why."""
    server = await start_server(ServerOptions(access=AccessPolicy(token="s3cret-token-xyz")))
    request = (
        b"GET /r HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    with trio.fail_after(10):
        answer = await http_exchange(server.port or 0, request)
        head, _, body = answer.partition(b"\r\n\r\n")
        async with run_cli("echo", url_of(server, "/r"), "hi") as echo:
            said = await echo.process.wait(), await echo.stderr()
    assert head.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body) == {"error": "missing or wrong token"}
    assert said[0] == 1 and "refused: HTTP 401 missing or wrong token (" in said[1]
