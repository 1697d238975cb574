"""The echo client as a library: results, events and one-line errors."""

from __future__ import annotations

import contextlib

import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from trio_ws_demo import BroadcastServer, ClientError, run_client
from trio_ws_demo.client import Closed, Echoed, Opened, Received, Sent, parse_url

from .conftest import url_of

TIMEOUT = 10


async def start_trio_websocket(nursery: trio.Nursery, handler) -> int:  # type: ignore[no-untyped-def]
    server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
    return server.port  # type: ignore[no-any-return]


async def test_events_follow_the_article(server: BroadcastServer) -> None:
    events: list[object] = []
    with trio.fail_after(TIMEOUT):
        result = await run_client(url_of(server), on_event=events.append)
    assert events == [
        Opened(url_of(server), None),
        Sent("Hello, WebSocket!"),
        Received("Hello, WebSocket!"),
        Echoed("Hello, WebSocket!"),  # the client recognised it as its own
        Closed(1000, None, False),
    ]
    assert result.ok


async def test_connection_refused_is_one_clear_error() -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    await listener.aclose()
    with trio.fail_after(TIMEOUT), pytest.raises(ClientError) as info:
        await run_client(f"ws://127.0.0.1:{port}")
    assert str(info.value) == f"connection refused (127.0.0.1:{port})"


async def test_rejected_handshake_shows_the_http_status(nursery: trio.Nursery) -> None:
    async def reject(request: WebSocketRequest) -> None:
        await request.reject(403, body=b"go away")

    port = await start_trio_websocket(nursery, reject)
    with trio.fail_after(TIMEOUT), pytest.raises(ClientError, match="HTTP 403"):
        await run_client(f"ws://127.0.0.1:{port}")


async def test_a_missing_echo_is_reported(nursery: trio.Nursery) -> None:
    async def swallow(request: WebSocketRequest) -> None:
        ws = await request.accept()
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.get_message()

    port = await start_trio_websocket(nursery, swallow)
    with trio.fail_after(TIMEOUT):
        result = await run_client(f"ws://127.0.0.1:{port}", ["a", "b"], timeout=0.3)
    assert result.missing == ["a", "b"]
    assert not result.ok


async def test_a_close_from_the_server_is_recorded(nursery: trio.Nursery) -> None:
    async def close_1008(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.get_message()
        await ws.aclose(1008, "policy")

    port = await start_trio_websocket(nursery, close_1008)
    with trio.fail_after(TIMEOUT):
        result = await run_client(f"ws://127.0.0.1:{port}", ["a"], timeout=5)
    assert result.closed_by_server
    assert (result.close_code, result.close_reason) == (1008, "policy")
    assert result.missing == ["a"]


async def test_listen_reports_other_clients_until_stopped(server: BroadcastServer) -> None:
    stop = trio.Event()
    seen: list[object] = []
    got_other = trio.Event()

    def on_event(event: object) -> None:
        seen.append(event)
        if event == Received("from someone else"):
            got_other.set()

    async def listener(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        def report(event: object) -> None:
            on_event(event)
            if event == Received("hi"):
                task_status.started()

        result = await run_client(url_of(server), ["hi"], listen=True, on_event=report, stop=stop)
        assert result.close_code == 1000 and not result.closed_by_server

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(listener)
            assert (await run_client(url_of(server), ["from someone else"])).ok
            await got_other.wait()
            stop.set()
    assert seen[-1] == Closed(1000, None, False)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1:8080", "must start with ws:// or wss://"),
        ("ws://", "has no host"),
        ("ws://127.0.0.1:99999", "invalid URL"),
    ],
)
def test_bad_urls_are_refused_before_connecting(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_url(url)


def test_default_ports_follow_the_scheme() -> None:
    assert parse_url("ws://example.com").port == 80
    assert parse_url("wss://example.com/chat?x=1").port == 443
    assert parse_url("wss://example.com/chat?x=1").resource == "/chat?x=1"
