"""The HTTP publish API: real HTTP over a real socket, one keep-alive connection
for many requests, the errors, and a publish that crosses Redis."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus

import jwt
import trio
import trustme
from websockets.trio.client import ClientConnection, connect

from trio_ws_demo import AccessPolicy, ServerOptions

from .conftest import StartServer, client_context, server_context, url_of
from .redis_server import RedisServer

TIMEOUT = 10
V1 = ["trio-ws-demo.v1"]
KEY = "k" * 32


async def next_v1(
    ws: ClientConnection, skip: frozenset[str] | set[str] = frozenset({"presence"})
) -> dict[str, object]:
    """The next v1 frame that is not about presence (or of a kind in *skip*)."""
    while True:
        frame = json.loads(await ws.recv())
        if frame["type"] not in skip:
            return dict(frame)


class Http:
    """One keep-alive HTTP/1.1 connection: requests out, whole responses in."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""
        self.status_line = ""
        """The status line of the last response, as it came."""

    @classmethod
    @asynccontextmanager
    async def open(cls, port: int) -> AsyncIterator[Http]:
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            yield cls(stream)

    async def post(
        self, path: str, body: bytes, content_type: str = "text/plain", **headers: str
    ) -> tuple[int, dict[str, str], dict[str, object]]:
        lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {content_type}",
                 f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
        await self.stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        return await self.response()

    async def response(self) -> tuple[int, dict[str, str], dict[str, object]]:
        while b"\r\n\r\n" not in self.buffer:
            chunk = await self.stream.receive_some(65536)
            assert chunk, "the server closed the connection"
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *fields = head.decode().split("\r\n")
        self.status_line = status_line
        headers = {k.lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
        length = int(headers["content-length"])
        while len(self.buffer) < length:
            self.buffer += await self.stream.receive_some(65536)
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), headers, json.loads(body)

    async def closed(self) -> bool:
        return not self.buffer and await self.stream.receive_some(1) == b""


async def test_a_post_reaches_the_room_as_a_websocket_message_would(
    start_server: StartServer,
) -> None:
    server = await start_server(ServerOptions(history=10))
    with trio.fail_after(TIMEOUT):
        async with connect(url_of(server, "/orders"), subprotocols=V1, proxy=None) as v1:  # type: ignore[list-item]
            joined = json.loads(await v1.recv())
            async with Http.open(server.port) as http:
                status, _, answer = await http.post("/orders", b"order 17 shipped")
                envelope = await next_v1(v1)
                status2, _, answer2 = await http.post(
                    "/orders", b"\x00\x01", "application/octet-stream"
                )
                binary = await next_v1(v1)
    assert status == 200 and answer == {"room": "orders", "epoch": joined["epoch"], "offset": 1}
    assert (envelope["type"], envelope["offset"], envelope["text"]) == ("message", 1,
                                                                         "order 17 shipped")  # fmt: skip
    assert status2 == 200 and answer2["offset"] == 2 and binary["base64"] == "AAE="


async def test_batches_over_one_keep_alive_connection_arrive_in_order(
    start_server: StartServer,
) -> None:
    server = await start_server()
    with trio.fail_after(TIMEOUT):
        async with connect(url_of(server, "/feed"), proxy=None) as ws:
            answers = []
            async with Http.open(server.port) as http:
                for batch in range(3):
                    lines = "".join(f"b{batch}-{i}\n" for i in range(100)).encode()
                    answers.append(await http.post("/feed", lines, "application/x-ndjson"))
            got = [await ws.recv() for _ in range(300)]
    assert [(status, a["count"], a["offset"]) for status, _, a in answers] == [
        (200, 100, 100), (200, 100, 200), (200, 100, 300),
    ]  # fmt: skip
    assert all("connection" not in headers for _, headers, _ in answers)  # kept alive
    assert got == [f"b{b}-{i}" for b in range(3) for i in range(100)]


async def test_bad_publishes_get_the_status_that_says_why(start_server: StartServer) -> None:
    server = await start_server(ServerOptions(max_message_size=100, max_batch=3))
    cases = [  # (path, body, type, status, closed: the body was not read whole)
        ("/ok", b"\xff\xfe", "text/plain", 400, False),
        ("/no..thing/../x", b"hi", "text/plain", 400, True),
        ("/ok", b"x" * 101, "text/plain", 413, True),
        ("/ok", b"a\nb\nc\nd\n", "application/x-ndjson", 413, False),
        ("/ok", b"<p>", "text/html", 415, True),
    ]
    with trio.fail_after(TIMEOUT):
        for path, body, kind, expected, closed in cases:
            async with Http.open(server.port) as http:
                status, headers, answer = await http.post(path, body, kind)
            assert (status, headers.get("connection") == "close") == (expected, closed), answer
            assert "error" in answer
        async with Http.open(server.port) as http:
            assert (await http.post("/ok", b"a\nb\nc\n", "application/x-ndjson"))[0] == 200


async def test_publishing_needs_a_token_with_publish_and_the_write_right(
    start_server: StartServer,
) -> None:
    server = await start_server(ServerOptions(access=AccessPolicy(jwt_secret=KEY)))

    def bearer(**claims: object) -> dict[str, str]:
        signed = jwt.encode({"exp": int(time.time()) + 60, **claims}, KEY, algorithm="HS256")
        return {"Authorization": f"Bearer {signed}"}

    cases = [
        ({}, 401),
        ({"Authorization": "Bearer nonsense"}, 401),
        (bearer(rooms={"ops/*": "rw"}), 403),  # no publish claim
        (bearer(rooms={"ops/*": "r"}, publish=True), 403),  # no write right
        (bearer(rooms={"dev/*": "rw"}, publish=True), 403),  # another room
        (bearer(rooms={"ops/*": "w"}, publish=True), 200),
    ]
    with trio.fail_after(TIMEOUT):
        for headers, expected in cases:
            async with Http.open(server.port) as http:
                assert (await http.post("/ops/alerts", b"disk full", **headers))[0] == expected


async def test_a_body_that_never_arrives_is_answered_within_the_handshake_timeout(
    start_server: StartServer,
) -> None:
    server = await start_server(ServerOptions(handshake_timeout=1))
    with trio.fail_after(3):
        async with Http.open(server.port) as http:
            await http.stream.send_all(
                b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                b"Content-Length: 100\r\n\r\nonly this much"
            )
            status, headers, _ = await http.response()
            assert (status, headers["connection"]) == (408, "close")
            assert await http.closed()


async def test_a_post_on_one_process_reaches_clients_of_another_through_redis(
    redis: RedisServer, start_server: StartServer
) -> None:
    a = await start_server(ServerOptions(redis=redis.url))
    b = await start_server(ServerOptions(redis=redis.url))
    with trio.fail_after(TIMEOUT):
        async with connect(url_of(b, "/news"), subprotocols=V1, proxy=None) as far:  # type: ignore[list-item]
            json.loads(await far.recv())
            async with Http.open(a.port) as http:
                status, _, answer = await http.post("/news", b"one\ntwo\n", "application/x-ndjson")
            first, second = await next_v1(far, skip={"presence", "backplane"}), await next_v1(far)
    assert status == 200 and answer["count"] == 2
    assert (first["text"], second["text"]) == ("one", "two")
    assert answer["offset"] == second["offset"] == first["offset"] + 1


async def test_publishing_connections_count_against_max_clients_and_bad_http_is_400(
    start_server: StartServer,
) -> None:
    server = await start_server(ServerOptions(max_clients=1))
    with trio.fail_after(TIMEOUT):
        async with Http.open(server.port) as kept:
            assert (await kept.post("/a", b"first"))[0] == 200  # kept alive: it holds a place
            async with Http.open(server.port) as second:
                status, headers, _ = await second.post("/a", b"second")
            assert (status, headers["connection"], headers["retry-after"]) == (503, "close", "5")
            await kept.stream.send_all(b"NOT HTTP AT ALL\r\n\r\n")
            status, headers, _ = await kept.response()
            assert (status, headers["connection"]) == (400, "close")
            assert await kept.closed()
        async with Http.open(server.port) as again:  # its place is free again
            assert (await again.post("/a", b"third"))[0] == 200
    assert server.connection_errors == 0


async def test_a_post_over_tls_is_kept_alive_too(start_server: StartServer, ca: trustme.CA) -> None:
    server = await start_server(ServerOptions(ssl_context=server_context(ca)))
    with trio.fail_after(TIMEOUT):
        tcp = await trio.open_tcp_stream("127.0.0.1", server.port)
        tls = trio.SSLStream(tcp, client_context(ca), server_hostname="127.0.0.1")
        async with tls:
            http = Http(tls)  # type: ignore[arg-type]
            assert (await http.post("/secure", b"one"))[0] == 200
            status, _, answer = await http.post("/secure", b"two\n", "application/x-ndjson")
    assert status == 200 and answer["count"] == 1


async def test_json_and_form_bodies_are_published_as_sent_and_bad_json_is_400(
    start_server: StartServer,
) -> None:
    """What backends send: a JSON body (checked to be one JSON value) and
    ``curl -d``'s form type, each one text message, the body's text as sent."""
    server = await start_server()
    json_body = '{"order": 17, "state": "shipped", "note": "caf\u00e9"}'.encode()
    form_body = b"order=17&state=shipped%20today"
    with trio.fail_after(TIMEOUT):
        async with connect(url_of(server, "/orders"), subprotocols=V1, proxy=None) as v1:  # type: ignore[list-item]
            json.loads(await v1.recv())
            async with Http.open(server.port) as http:
                ok_json = await http.post("/orders", json_body, "application/json; charset=utf-8")
                bad = [
                    await http.post("/orders", body, "application/json")
                    for body in (b'{"order": ', b"", b"NaN", b"1 2", b'"\xff"')
                ]
                bad_lines = [http.status_line for _ in bad[-1:]]
                ok_form = await http.post("/orders", form_body, "application/x-www-form-urlencoded")
            got = [await next_v1(v1), await next_v1(v1)]
    assert ok_json[0] == 200 and ok_json[2]["offset"] == 1
    assert [(status, sorted(answer)) for status, _, answer in bad] == [(400, ["error"])] * 5
    assert "not one JSON value" in str(bad[0][2]["error"])
    assert bad_lines == ["HTTP/1.1 400 Bad Request"]
    assert ok_form[0] == 200 and ok_form[2]["offset"] == 2  # nothing bad was published
    assert [(m["offset"], m["text"]) for m in got] == [
        (1, json_body.decode()), (2, form_body.decode()),
    ]  # fmt: skip


async def test_a_batch_skips_empty_lines(start_server: StartServer) -> None:
    server = await start_server(ServerOptions(max_batch=2))
    with trio.fail_after(TIMEOUT):
        async with connect(url_of(server, "/feed"), proxy=None) as ws:
            async with Http.open(server.port) as http:
                status, _, answer = await http.post(
                    "/feed", b"\none\n\n\r\ntwo\r\n\n\n", "application/x-ndjson"
                )
                assert status == 200, answer  # before waiting for what it published
                empty = await http.post("/feed", b"\n\r\n\n", "application/x-ndjson")
                after = await http.post("/feed", b"three", "text/plain")
            got = [await ws.recv() for _ in range(3)]
    assert (status, answer["count"], answer["offset"]) == (200, 2, 2)  # 2 <= --max-batch
    assert (empty[0], empty[2]) == (400, {"error": "no message in the body"})
    assert after[0] == 200 and got == ["one", "two", "three"]


async def test_every_publish_answer_has_its_reason_phrase(start_server: StartServer) -> None:
    server = await start_server(ServerOptions(max_message_size=10))
    with trio.fail_after(TIMEOUT):
        async with Http.open(server.port) as http:
            await http.post("/a", b"fine")
            ok = http.status_line
        async with Http.open(server.port) as http:
            await http.post("/a", b"x" * 11)
            too_big = http.status_line
        async with Http.open(server.port) as http:
            await http.post("/a", b"<p>", "text/html")
            unsupported = http.status_line
    assert (ok, too_big, unsupported) == (
        "HTTP/1.1 200 OK",
        f"HTTP/1.1 413 {HTTPStatus(413).phrase}",  # its name depends on Python's version
        "HTTP/1.1 415 Unsupported Media Type",
    )
