"""``/metrics`` beyond counters: HTTP publishes by status, the delivery lag,
broadcast and handshake histograms, and the backplane gauge through an outage.

Real servers on real sockets, scraped over HTTP and parsed with
prometheus_client's own parser (so the text format itself is checked too).
Durations are asserted by their counts, never by their values (the machine's
speed is not the test's business), except for robust lower bounds.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import trio
import trustme
from prometheus_client.parser import text_string_to_metric_families
from websockets.trio.client import connect

from trio_ws_demo import AccessPolicy, BroadcastServer, ServerOptions
from trio_ws_demo.histogram import Histogram

from .conftest import StartServer, client_context, server_context, url_of
from .redis_server import RedisServer
from .wsraw import http_exchange

TIMEOUT = 20
TOKEN = "s3cret-token-xyz"
V1 = ["trio-ws-demo.v1"]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(server: BroadcastServer, token: str | None = None) -> Samples:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    request = f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n".encode()
    answer = await http_exchange(server.port or 0, request)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


async def post(
    server: BroadcastServer, path: str, body: bytes, kind: str = "text/plain", token: str = ""
) -> int:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {kind}\r\n{auth}"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    answer = await http_exchange(server.port or 0, request)
    return int(answer.split(b" ", 2)[1])


def count(samples: Samples, histogram: str) -> float:
    return samples[(f"trio_ws_demo_{histogram}_seconds_count", ())]


async def test_http_publishes_are_counted_by_status(start_server: StartServer) -> None:
    server = await start_server(ServerOptions(access=AccessPolicy(token=TOKEN)))
    with trio.fail_after(TIMEOUT):
        assert await post(server, "/feed", b"one", token=TOKEN) == 200
        assert await post(server, "/feed", b"a\nb\n", "application/x-ndjson", TOKEN) == 200
        assert await post(server, "/feed", b"no credential") == 401
        assert await post(server, "/feed", b"x", "image/png", TOKEN) == 415
        assert await post(server, "/not//a%room", b"x", token=TOKEN) == 400
        m = await scrape(server, TOKEN)
    publishes = {
        dict(labels)["status"]: value
        for (name, labels), value in m.items()
        if name == "trio_ws_demo_http_publishes_total"
    }
    assert publishes == {"200": 2, "400": 1, "401": 1, "415": 1}
    assert m[("trio_ws_demo_http_published_total", ())] == 3  # messages, not requests


async def test_a_websocket_message_and_a_post_are_timed(start_server: StartServer) -> None:
    server = await start_server()
    with trio.fail_after(TIMEOUT):
        before = await scrape(server)
        async with connect(url_of(server, "/r"), proxy=None) as ws:
            await ws.send("from a socket")  # its echo: the server's reader runs, past the 101
            assert await ws.recv() == "from a socket"
            opened = await scrape(server)
            assert await post(server, "/r", b"from a POST") == 200
            assert await ws.recv() == "from a POST"
            after = await scrape(server)
    assert count(before, "handshake_duration") == 0
    assert count(opened, "handshake_duration") == 1
    assert opened[("trio_ws_demo_handshake_duration_seconds_sum", ())] > 0
    for histogram in ("delivery_lag", "broadcast_duration"):
        assert count(before, histogram) == 0
        assert count(opened, histogram) == 1, histogram
        assert count(after, histogram) == 2, histogram  # one per message, not per client
        infinity = after[(f"trio_ws_demo_{histogram}_seconds_bucket", (("le", "+Inf"),))]
        assert infinity == 2
    assert after[("trio_ws_demo_broadcast_duration_seconds_sum", ())] > 0


async def test_one_fan_out_to_many_clients_is_one_observation(start_server: StartServer) -> None:
    server = await start_server()
    with trio.fail_after(TIMEOUT):
        async with (
            connect(url_of(server, "/r"), proxy=None) as a,
            connect(url_of(server, "/r"), proxy=None) as b,
            connect(url_of(server, "/r"), subprotocols=V1, proxy=None) as c,  # type: ignore[list-item]
        ):
            assert json.loads(await c.recv())["type"] == "joined"
            assert await post(server, "/r", b"to three") == 200
            assert [await a.recv(), await b.recv()] == ["to three"] * 2
            while json.loads(await c.recv())["type"] != "message":
                pass
            m = await scrape(server)
    assert count(m, "broadcast_duration") == 1
    assert count(m, "delivery_lag") == 1
    assert count(m, "handshake_duration") == 3


async def scrape_over_tls(port: int, ca: trustme.CA) -> bytes:
    """/metrics over a TLS connection that never becomes a WebSocket."""
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    answer = b""
    async with trio.SSLStream(tcp, client_context(ca), server_hostname="127.0.0.1") as tls:
        await tls.send_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        with contextlib.suppress(trio.BrokenResourceError):
            while chunk := await tls.receive_some(65536):
                answer += chunk
    return answer


async def test_a_wss_handshake_is_timed_once_it_is_open(
    start_server: StartServer, ca: trustme.CA
) -> None:
    server = await start_server(ServerOptions(ssl_context=server_context(ca)))
    port = server.port or 0
    with trio.fail_after(TIMEOUT):
        before = await scrape_over_tls(port, ca)  # TLS, but no WebSocket: not observed
        async with connect(f"wss://127.0.0.1:{port}/r", ssl=client_context(ca), proxy=None) as ws:
            await ws.send("over TLS")
            assert await ws.recv() == "over TLS"
        after = await scrape_over_tls(port, ca)
    assert b"\ntrio_ws_demo_handshake_duration_seconds_count 0.0\n" in before
    assert b"\ntrio_ws_demo_handshake_duration_seconds_count 1.0\n" in after


async def test_the_lag_of_a_message_from_another_process_and_the_backplane_gauge(
    redis: RedisServer, start_server: StartServer
) -> None:
    options = ServerOptions(redis=redis.url)
    a = await start_server(options)
    b = await start_server(options)
    with trio.fail_after(TIMEOUT):
        async with (
            connect(url_of(b, "/x"), subprotocols=V1, proxy=None) as far,  # type: ignore[list-item]
            connect(url_of(a, "/x"), proxy=None) as talker,
        ):
            await talker.send("across")
            while (frame := json.loads(await far.recv()))["type"] != "message":
                pass
            assert frame["text"] == "across"
            m = await scrape(b)
            assert count(m, "delivery_lag") == 1  # fanned out on B, published on A
            assert count(m, "broadcast_duration") == 1
            assert m[("trio_ws_demo_backplane_up", ())] == 1
            await redis.kill()
            while (frame := json.loads(await far.recv()))["type"] != "backplane":
                pass
            assert frame["up"] is False
            down = await scrape(b)
    assert down[("trio_ws_demo_backplane_up", ())] == 0


def test_a_bucket_is_an_upper_bound_and_counts_are_cumulative() -> None:
    histogram = Histogram((0.001, 0.01))
    for seconds in (0.0, 0.001, 0.002, 0.01, 3.0):
        histogram.observe(seconds)
    snapshot = histogram.snapshot()
    assert snapshot.buckets == ((0.001, 2), (0.01, 4))  # le: 0.001 itself is in the first
    assert snapshot.count == 5 and snapshot.sum == pytest.approx(3.013)


async def test_every_metric_is_documented(redis: RedisServer, start_server: StartServer) -> None:
    """docs/metrics.md is the reference: a metric the server exports and the
    page does not name fails here (with --redis, so the backplane's are there)."""
    server = await start_server(ServerOptions(redis=redis.url))
    with trio.fail_after(TIMEOUT):  # (the server starts once Redis answered: master known)
        request = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        text = await http_exchange(server.port or 0, request)
    page = (Path(__file__).parent.parent / "docs" / "metrics.md").read_text()
    body = text.partition(b"\r\n\r\n")[2].decode()
    names = {
        family.name + suffix
        for family in text_string_to_metric_families(body)
        for suffix in [{"counter": "_total", "info": "_info"}.get(family.type, "")]
    }
    assert len(names) > 40
    assert sorted(name for name in names if f"`{name}`" not in page) == []


async def test_the_lag_is_measured_against_redis_clock_not_the_publishers(
    redis: RedisServer, start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A publishing host whose clock is an hour behind must not make every
    message look an hour late elsewhere: Redis stamps the entry."""
    import time as real_time

    from trio_ws_demo.backplane import outbound

    class HourBehind:
        @staticmethod
        def time() -> float:
            return real_time.time() - 3600

    monkeypatch.setattr(outbound, "time", HourBehind)
    publisher = await start_server(ServerOptions(redis=redis.url))
    far = await start_server(ServerOptions(redis=redis.url))
    with trio.fail_after(TIMEOUT):
        async with connect(url_of(far, "/x"), subprotocols=V1, proxy=None) as listener:  # type: ignore[list-item]
            assert await post(publisher, "/x", b"across") == 200
            while json.loads(await listener.recv())["type"] != "message":
                pass
            m = await scrape(far)
    assert count(m, "delivery_lag") == 1
    assert m[("trio_ws_demo_delivery_lag_seconds_bucket", (("le", "10.0"),))] == 1
