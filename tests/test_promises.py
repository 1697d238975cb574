"""README promises that no other test held: each checked from outside, as a user would see it.

From the test audit of 2026-12-01 (§5): echo's exit status when no echo comes,
the second Ctrl-C, what is hidden where, the HTTP headers the README shows,
TLS renegotiation refused and the handshake timeout on a ``wss://`` port, and
that an installed (not editable) package ships the chat page.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import trio
import trustme

from trio_ws_demo import AccessPolicy, BroadcastServer, ServerOptions

from .conftest import StartServer, server_context, url_of
from .processes import run_cli
from .wsraw import http_exchange

TIMEOUT = 15
ROOT = Path(__file__).parent.parent


async def test_echo_exits_1_when_no_echo_comes_in_time(nursery: trio.Nursery) -> None:
    from trio_websocket import WebSocketRequest, serve_websocket

    async def never_echo(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.get_message()
        await trio.sleep_forever()

    server = await nursery.start(serve_websocket, never_echo, "127.0.0.1", 0, None)
    with trio.fail_after(TIMEOUT):
        async with run_cli(
            "echo", f"ws://127.0.0.1:{server.port}", "anyone?", "--timeout", "0.5"
        ) as cli:
            assert await cli.process.wait() == 1
            err = await cli.stderr()
    assert "No echo for anyone? within 0.5 s\n" in err


async def test_a_second_ctrl_c_in_listen_mode_exits_130(nursery: trio.Nursery) -> None:
    """The first Ctrl-C closes politely; a second one, while that close is under
    way (this server never answers it), exits at once with 130."""
    import base64
    import hashlib

    closing = trio.Event()

    async def never_answers_a_close(stream: trio.SocketStream) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += await stream.receive_some()
        key = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(
            hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
        )
        await stream.send_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        while data := await stream.receive_some():
            if data[:1] == b"\x88":  # the client's close frame: its first Ctrl-C was taken
                closing.set()
        await trio.sleep_forever()

    listeners = await nursery.start(trio.serve_tcp, never_answers_a_close, 0)
    port = listeners[0].socket.getsockname()[1]
    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", "--listen", f"ws://127.0.0.1:{port}/") as cli:
            await cli.log.wait_for("Connection opened")
            cli.interrupt()
            await closing.wait()
            cli.interrupt()
            # 130 comes only from the second Ctrl-C (the polite close would end 0 or 1).
            assert await cli.process.wait() == 130


async def test_the_token_never_shows_in_healthz_metrics_rooms_or_the_log(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    from websockets.trio.client import connect

    caplog.set_level("DEBUG", logger="trio_ws_demo")
    token = "S3CRET-t0ken-xyz"
    server = await start_server(ServerOptions(access=AccessPolicy(token=token), history=1))
    auth = f"Authorization: Bearer {token}\r\n"
    with trio.fail_after(TIMEOUT):
        async with connect(url_of(server, f"/room?token={token}"), proxy=None) as ws:
            await ws.send("hello")
            await ws.recv()
            # A client that presents a wrong token (and a right one in the wrong place).
            for wrong in ("wrong-token", f"{token}x"):
                await http_exchange(
                    server.port, f"GET /?token={wrong} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                )
            answers = [
                await http_exchange(
                    server.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode()
                )
                for path in ("/healthz", "/metrics", "/rooms")
            ]
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert token.encode() not in answer
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "room" in logged and token not in logged and "wrong-token" not in logged


async def test_the_headers_the_readme_shows(server: BroadcastServer) -> None:
    with trio.fail_after(TIMEOUT):
        for path, content_type in [
            ("/healthz", b"application/json"),
            ("/metrics", b"text/plain; version=0.0.4"),
            ("/", b"text/html; charset=utf-8"),
        ]:
            answer = await http_exchange(
                server.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            )
            head = answer.split(b"\r\n\r\n")[0]
            assert b"\r\nCache-Control: no-store" in head, path
            assert b"\r\nX-Content-Type-Options: nosniff" in head, path
            assert b"\r\nContent-Type: " + content_type in head, path
            assert b"\r\nConnection: close" in head, path
            # HEAD: the same head, no body (/metrics' length moves: the process's own
            # CPU and memory are in it).
            only = await http_exchange(
                server.port, f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            )
            assert only.endswith(b"\r\n\r\n")

            def without_length(head: bytes) -> list[bytes]:
                return [h for h in head.split(b"\r\n") if not h.startswith(b"Content-Length")]

            assert without_length(only[:-4]) == without_length(head), path


async def test_a_silent_client_on_a_wss_port_is_dropped_at_the_handshake_timeout(
    start_server: StartServer, ca: trustme.CA
) -> None:
    server = await start_server(
        ServerOptions(ssl_context=server_context(ca), handshake_timeout=0.5)
    )
    with trio.fail_after(3):  # the default timeout (10 s) would fail here
        silent = await trio.open_tcp_stream("127.0.0.1", server.port)  # no ClientHello
        assert await silent.receive_some() == b""
        await silent.aclose()
    assert server.statistics().rejections["handshake timeout"] == 1


async def test_tls12_renegotiation_is_refused_and_the_server_goes_on(
    start_server: StartServer, ca: trustme.CA, tmp_path: Path
) -> None:
    """openssl s_client's 'R' asks to renegotiate: the server answers with a
    no_renegotiation alert (OP_NO_RENEGOTIATION; s_client gives up on it), logs no
    error, and serves the next client over TLS as before."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs openssl (apt-get install openssl; CI installs it)")
    server = await start_server(ServerOptions(ssl_context=server_context(ca)))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    process = await trio.lowlevel.open_process(
        [openssl, "s_client", "-connect", f"127.0.0.1:{server.port}", "-tls1_2", "-crlf",
         "-no_ign_eof", "-CAfile", str(ca_file), "-servername", "127.0.0.1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdin is not None and process.stdout is not None
    seen = b""
    try:
        with trio.fail_after(TIMEOUT):
            while b"Verify return code: 0 (ok)" not in seen:
                seen += await process.stdout.receive_some()
            await process.stdin.send_all(b"R\n")  # renegotiate
            while chunk := await process.stdout.receive_some():
                seen += chunk
            await process.wait()
    finally:
        process.kill()
        await process.wait()
        await process.stdin.aclose()
        await process.stdout.aclose()
    assert b"RENEGOTIATING" in seen
    assert b"no renegotiation" in seen  # the server's alert, not a dropped connection
    assert server.connection_errors == 0
    with trio.fail_after(TIMEOUT):
        from .conftest import client_context
        from .wsraw import RawClient

        client = await RawClient.connect(server.port, tls=client_context(ca))
        await client.send("still serving")
        assert await client.next_message() == "still serving"
        await client.stream.aclose()


def test_a_built_wheel_ships_the_chat_page(tmp_path: Path) -> None:
    """What `pip install .` (not editable) installs: the chat page is package data."""
    # The build backend itself (setuptools, a test dependency), as pip or uv would call it.
    subprocess.run(
        [sys.executable, "-c",
         "import sys, setuptools.build_meta as b; b.build_wheel(sys.argv[1])", str(tmp_path)],
        check=True, timeout=120, cwd=ROOT, capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("trio_ws_demo-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "trio_ws_demo/static/chat.html" in names
    assert "trio_ws_demo/py.typed" in names


async def test_allow_insecure_token_lifts_the_plain_ws_refusal() -> None:
    args = ["echo", "ws://chat.example.invalid/", "hi", "--token", "s3cret"]
    with trio.fail_after(TIMEOUT):
        async with run_cli(*args, "--allow-insecure-token") as cli:
            code = await cli.process.wait()
            err = await cli.stderr()
    assert code == 1  # it tried: the name does not resolve (it was 2, a refusal, without the flag)
    assert "not sending the token" not in err and "s3cret" not in err
    assert err.startswith("Connection error: ")


async def test_resume_says_what_happened_with_backoff_0_5_then_doubling() -> None:
    """echo --listen --resume while the server goes away and comes back (a restart,
    so its history is gone): the lines the README shows, in order."""
    from .conftest import free_port

    port = str(free_port())
    with trio.fail_after(30):
        async with run_cli("serve", "--port", port, "--history", "10") as server:
            await server.readline()
            async with run_cli("echo", "--listen", "--resume", f"ws://127.0.0.1:{port}/") as echo:
                await echo.log.wait_for("Connection opened")
                # Its own message back: by then it has the room's epoch, to resume with.
                assert await echo.readline() == "Client sends: Hello, WebSocket!"
                assert await echo.readline() == "Server sent:  Hello, WebSocket!"
                server.process.kill()
                await server.process.wait()
                lost = [await echo.log.wait_for("reconnecting in") for _ in range(3)]
                async with run_cli("serve", "--port", port, "--history", "10") as again:
                    await again.readline()
                    back = await echo.log.wait_for("Reconnected")
                    echo.interrupt()
                    assert await echo.process.wait() in (0, 130)
                    again.interrupt()
    delays = [line.rsplit("reconnecting in ", 1)[1] for line in lost]
    assert delays == ["0.5 s", "1 s", "2 s"]
    assert all(line.startswith("Connection lost (") for line in lost)
    assert back == "Reconnected, the server's history was lost: messages may be missing"
