"""Bad input gets the RFC's answer, and everyone else keeps being served."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing
from wsproto.events import CloseConnection, TextMessage

from trio_ws_demo import BroadcastServer, ServerOptions, run_client

from .conftest import StartServer, url_of
from .wsraw import RawClient, client_frame, http_exchange, upgrade_request

TIMEOUT = 10
TEXT, BINARY, CONTINUATION, PING = 0x1, 0x2, 0x0, 0x9


async def close_code_after(server: BroadcastServer, data: bytes) -> int | None:
    """Send raw *data* on a fresh connection; return the close code the server answers."""
    client = await RawClient.connect(server.port)
    await client.stream.send_all(data)
    client.ws.receive_data(b"")  # nothing: wsproto would reject our broken frames anyway
    answer = b""
    while chunk := await client.stream.receive_some(65536):
        answer += chunk
    await client.stream.aclose()
    # The answer is an unmasked server close frame: 0x88, length, code.
    assert answer[:1] == b"\x88", answer[:20]
    return int.from_bytes(answer[2:4], "big")


async def still_serving(server: BroadcastServer) -> None:
    result = await run_client(url_of(server), ["still here?"])
    assert result.ok


@pytest.fixture
def no_errors_logged(caplog: pytest.LogCaptureFixture):  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


@pytest.mark.usefixtures("no_errors_logged")
@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("invalid UTF-8", client_frame(TEXT, b"\xff\xfe bad"), 1007),
        ("unmasked client frame", client_frame(TEXT, b"hi", masked=False), 1002),
        ("reserved opcode", client_frame(0x3, b"x"), 1002),
        ("reserved RSV bit", client_frame(TEXT, b"x", rsv=0b100), 1002),
        ("continuation without a start", client_frame(CONTINUATION, b"x"), 1002),
        (
            "new message inside a fragmented one",
            client_frame(TEXT, b"a", fin=False) + client_frame(TEXT, b"b"),
            1002,
        ),
        ("fragmented ping", client_frame(PING, b"p", fin=False), 1002),
    ],
)
async def test_protocol_violations_get_the_rfc_close_code(
    server: BroadcastServer, name: str, data: bytes, code: int
) -> None:
    with trio.fail_after(TIMEOUT):
        assert await close_code_after(server, data) == code, name
        await still_serving(server)


@pytest.mark.usefixtures("no_errors_logged")
async def test_a_message_over_the_limit_closes_with_1009(start_server: StartServer) -> None:
    server = await start_server(ServerOptions(max_message_size=1000))
    with trio.fail_after(TIMEOUT):
        assert await close_code_after(server, client_frame(BINARY, b"x" * 1001)) == 1009
        # At the limit is fine.
        result = await run_client(url_of(server), [b"y" * 1000])
        assert result.ok


@pytest.mark.usefixtures("no_errors_logged")
async def test_a_frame_claiming_2_to_the_62_bytes_is_cut_off_at_the_limit(
    start_server: StartServer,
) -> None:
    """The server must not wait for (or buffer) the claimed payload."""
    server = await start_server(ServerOptions(max_message_size=64 * 1024))
    header_only = client_frame(BINARY, b"", claimed_length=2**62)
    # Header, mask key, then just past the limit of (masked) payload bytes.
    data = header_only + bytes(64 * 1024 + 1)
    with trio.fail_after(TIMEOUT):
        assert await close_code_after(server, data) == 1009
        await still_serving(server)


@pytest.mark.usefixtures("no_errors_logged")
@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"\x16\x03\x01\x02\x00garbage, not HTTP\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nUser-Agent: no host\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (upgrade_request(version="8"), 426),
        (upgrade_request(key=None), 400),
        (upgrade_request(key="not base64!"), 400),
        (upgrade_request(extra="X-Big: " + "a" * 20_000 + "\r\n"), 431),
    ],
    ids=[
        "garbage",
        "malformed-header",
        "obsolete-line-folding",
        "no-host",
        "two-hosts",
        "two-spaces",
        "wrong-version",
        "no-key",
        "bad-key",
        "head-too-large",
    ],
)
async def test_bad_handshakes_get_an_http_error(
    server: BroadcastServer, request_bytes: bytes, status: int
) -> None:
    with trio.fail_after(TIMEOUT):
        answer = await http_exchange(server.port, request_bytes)
        assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:80]
        assert b"\r\nConnection: close\r\n" in answer
        if status == 426:
            assert b"\r\nSec-WebSocket-Version: 13\r\n" in answer
        await still_serving(server)


@pytest.mark.usefixtures("no_errors_logged")
async def test_an_upgrade_with_a_body_gets_400_and_does_not_hang(
    server: BroadcastServer,
) -> None:
    """What follows an upgrade's head are frames; a Content-Length (here not
    even a number) would make a body of them, so the front door says 400."""
    request = upgrade_request(extra="Content-Length: twelve\r\n")
    with trio.fail_after(TIMEOUT):
        answer = await http_exchange(server.port, request)
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:80]
        await trio.testing.wait_all_tasks_blocked()
        assert server.clients == 0  # the connection did not wait for a handshake
        await still_serving(server)


async def test_one_client_too_many_gets_503_and_the_others_are_unaffected(
    start_server: StartServer,
) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.trio.client import connect

    server = await start_server(ServerOptions(max_clients=2))
    url = url_of(server)
    with trio.fail_after(TIMEOUT):
        async with connect(url, proxy=None) as a, connect(url, proxy=None) as b:
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url, proxy=None):
                    pass
            assert refused.value.response.status_code == 503
            await a.send("a is fine")
            assert await a.recv() == "a is fine"
            assert await b.recv() == "a is fine"
        # Slots are released when clients leave.
        await still_serving(server)
    assert server.statistics().rejections["too many clients"] == 1


async def test_silent_and_stalled_handshakes_are_dropped_while_others_are_served(
    start_server: StartServer,
) -> None:
    server = await start_server(ServerOptions(handshake_timeout=1))
    with trio.fail_after(TIMEOUT):
        silent = await trio.open_tcp_stream("127.0.0.1", server.port)
        stalled = await trio.open_tcp_stream("127.0.0.1", server.port)
        await stalled.send_all(upgrade_request()[:40])  # half a head, then nothing
        await still_serving(server)  # served while the two are pending
        assert await silent.receive_some() == b""  # dropped by the server
        assert await stalled.receive_some() == b""
        await silent.aclose()
        await stalled.aclose()
    assert server.statistics().rejections["handshake timeout"] == 2


@pytest.mark.parametrize("client", ["silent", "slowloris"])
async def test_handshake_timeout_is_exact_under_a_virtual_clock(
    autojump_clock: trio.testing.MockClock, client: str
) -> None:
    """Sending nothing, or one byte a second, is dropped at exactly handshake_timeout."""
    server = BroadcastServer(ServerOptions(handshake_timeout=10))
    client_side, server_side = trio.testing.memory_stream_pair()
    request = upgrade_request()
    start = trio.current_time()

    async def drip() -> None:
        for byte in request:
            try:
                await client_side.send_all(bytes([byte]))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return  # the server hung up on us, as it should
            await trio.sleep(1)  # virtual time

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.handle_stream, server_side)
            if client == "slowloris":
                nursery.start_soon(drip)
            assert await client_side.receive_some() == b""
            nursery.cancel_scope.cancel()
    assert trio.current_time() - start == pytest.approx(10)
    assert server.statistics().rejections["handshake timeout"] == 1


async def test_close_frames_are_read_even_while_messages_flood_in(
    start_server: StartServer,
) -> None:
    """The server keeps reading: a ping and a close behind a flood still get answered
    (no --max-message-rate here: the flood is the point)."""
    server = await start_server(ServerOptions(max_message_rate=0))
    with trio.fail_after(TIMEOUT):
        client = await RawClient.connect(server.port)
        flood = b"".join(client.frame(f"m{n}") for n in range(2000))
        await client.stream.send_all(flood + client_frame(PING, b"are you there"))
        from wsproto.events import Pong

        events = []
        while not any(isinstance(e, Pong) for e in events):
            events.append(await client.next_event())
        await client.stream.send_all(client.close_frame())
        rest = await client.events_until_close()
        await client.stream.aclose()
    assert isinstance(rest[-1], CloseConnection) and rest[-1].code == 1000
    pieces = "".join(
        e.data + ("\n" if e.message_finished else "")
        for e in [*events, *rest]
        if isinstance(e, TextMessage)  # next_event() may give a message in pieces
    )
    assert pieces.split() == [f"m{n}" for n in range(2000)]  # all, in order, before the close


@pytest.mark.usefixtures("no_errors_logged")
async def test_the_message_size_limit_counts_bytes_for_text_too(start_server: StartServer) -> None:
    """Ten 😀 are 10 characters but 40 bytes: over a 10-byte limit."""
    from websockets.exceptions import ConnectionClosed as WsClosed
    from websockets.trio.client import connect

    server = await start_server(ServerOptions(max_message_size=10))
    with trio.fail_after(TIMEOUT):
        async with connect(url_of(server), proxy=None) as ws:
            await ws.send("a" * 10)  # at the limit
            assert await ws.recv() == "a" * 10
            await ws.send("😀" * 10)
            with pytest.raises(WsClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        assert (await run_client(url_of(server), ["still ok"])).ok  # 8 bytes: fine
