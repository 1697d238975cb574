"""A new user's mistakes and a server's refusals: one clear line, the right exit code.

Each of these once printed a secret, a traceback or a misleading message.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys

import pytest
import trio
import trio.testing

from trio_ws_demo import AccessPolicy, BroadcastServer, ServerOptions

from .conftest import PORT_8080, StartServer, url_of
from .processes import run_cli
from .wsraw import http_exchange

TIMEOUT = 15


@pytest.mark.parametrize("command", ["serve", "echo"])
async def test_help_never_shows_the_token(command: str) -> None:
    with trio.fail_after(TIMEOUT):
        done = await trio.run_process(
            [sys.executable, "-m", "trio_ws_demo", command, "--help"],
            capture_stdout=True,
            env={**os.environ, "TRIO_WS_DEMO_TOKEN": "hunter2"},
        )
    out = " ".join(done.stdout.decode().split())  # help text wraps anywhere
    assert "hunter2" not in out
    assert "from $TRIO_WS_DEMO_TOKEN" in out
    assert "(default: None)" not in out


@pytest.mark.parametrize(
    "header", ["Host: other", "Sec-WebSocket-Key: abc", "upgrade: h2c", "Connection: close"]
)
async def test_a_header_the_handshake_sets_is_a_usage_error(header: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", "-H", header, "ws://127.0.0.1:9", "hi") as cli:
            assert await cli.process.wait() == 2
            err = await cli.stderr()
    assert err.startswith(f"error: -H cannot set {header.split(':')[0]}:")
    assert "Traceback" not in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--ping-timeout", "abc"],
            "--ping-timeout: must be a positive number of seconds, not 'abc'",
        ),
        (
            ["--ping-timeout", "-1"],
            "--ping-timeout: must be a positive number of seconds, not '-1'",
        ),
        (["--max-clients", "x"], "--max-clients: must be a whole number of at least 1, not 'x'"),
        (
            ["--max-header-size", "10"],
            "--max-header-size: must be a whole number of bytes, at least 256",
        ),
        (["--port", "http"], "--port: must be a port number, not 'http'"),
    ],
)
async def test_a_bad_value_is_a_usage_error_that_names_no_internals(
    flags: list[str], message: str
) -> None:
    with trio.fail_after(TIMEOUT):
        async with run_cli("serve", *flags) as cli:
            assert await cli.process.wait() == 2
            err = await cli.stderr()
    assert message in err
    assert "_positive" not in err and "_non_negative" not in err


async def test_a_refusal_says_why(start_server: StartServer) -> None:
    server = await start_server(ServerOptions(access=AccessPolicy(token="abc")))
    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", url_of(server, "/room")) as cli:
            assert await cli.process.wait() == 1
            err = await cli.stderr()
    assert err == (
        f"Connection error: refused: HTTP 401 missing or wrong token ({url_of(server, '/room')})\n"
    )


async def test_a_plain_http_server_is_not_a_websocket_endpoint(nursery: trio.Nursery) -> None:
    async def plain_http(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.receive_some(65536)
            await stream.send_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello"
            )

    listeners = await nursery.start(trio.serve_tcp, plain_http, 0)
    port = listeners[0].socket.getsockname()[1]
    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", f"ws://127.0.0.1:{port}") as cli:
            assert await cli.process.wait() == 1
            err = await cli.stderr()
    assert err == (
        f"Connection error: not a WebSocket endpoint (HTTP 200 from ws://127.0.0.1:{port})\n"
    )


def test_the_library_agrees_that_a_ping_interval_of_0_is_off() -> None:
    assert ServerOptions(ping_interval=0).ping_interval is None


async def test_startup_is_one_line_and_probes_are_not_logged() -> None:
    with trio.fail_after(TIMEOUT):
        async with run_cli("serve", "--port", "0") as server:
            line = await server.readline()
            url = line.split()[2]
            port = int(url.rsplit(":", 1)[1])
            assert line == (
                f"Listening on ws://127.0.0.1:{port} (chat page: http://127.0.0.1:{port}/)"
                ", auth: open"
            )
            for path in ("/healthz", "/", "/a//b"):
                await http_exchange(port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            server.interrupt()
            assert await server.process.wait() == 0
            log = await server.stderr()
    assert "listening on" not in log  # the line above says it once
    assert "/healthz" not in log  # a probe that succeeds is an access line at DEBUG
    assert '"GET /" 200' in log and '"GET /a//b" 404' in log  # the access log
    assert "HTTP 404" not in log  # ... and no second line for the same answer


@PORT_8080
async def test_a_word_is_a_message_not_a_url(nursery: trio.Nursery) -> None:
    """`echo hello` sends "hello" to the default URL: a server of ours on 127.0.0.1:8080
    (the one test that needs that port) gets it and echoes it."""
    from trio_ws_demo import BroadcastServer, ServerOptions, ServerStartupError

    server = BroadcastServer(ServerOptions(echo=True))
    try:
        await nursery.start(server.run, "127.0.0.1", 8080)
    except ServerStartupError:
        pytest.skip("127.0.0.1:8080, echo's default URL, is in use on this machine")
    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", "hello", "--timeout", "5") as cli:
            lines = await cli.rest()
            assert await cli.process.wait() == 0
    assert lines == ["Client sends: hello", "Server sent:  hello"]
    assert server.statistics().messages_in == 1


async def test_count_with_stdin_is_a_usage_error() -> None:
    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", "ws://127.0.0.1:9", "-", "--count", "3", stdin=b"a\n") as cli:
            assert await cli.process.wait() == 2
            assert "--count does not apply to '-'" in await cli.stderr()


@pytest.mark.parametrize("source", ["flag", "environment"])
async def test_the_token_never_goes_over_plain_ws_to_another_host(source: str) -> None:
    args = ["echo", "ws://chat.example.invalid/", "hi"]
    env = {}
    if source == "environment":  # even to a host that may have the ambient token
        env = {"TRIO_WS_DEMO_TOKEN": "s3cret", "TRIO_WS_DEMO_TOKEN_HOSTS": "chat.example.invalid"}
    if source == "flag":
        args += ["--token", "s3cret"]
    with trio.fail_after(TIMEOUT):
        async with run_cli(*args, env=env) as cli:
            assert await cli.process.wait() == 2
            err = await cli.stderr()
    assert "not sending the token to chat.example.invalid over plain ws://" in err
    assert "s3cret" not in err


async def test_the_token_may_go_to_this_machine_over_plain_ws(start_server: StartServer) -> None:
    server = await start_server(ServerOptions(access=AccessPolicy(token="abc")))
    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", url_of(server), env={"TRIO_WS_DEMO_TOKEN": "abc"}) as cli:
            assert await cli.process.wait() == 0


async def test_the_environment_token_goes_only_to_the_hosts_it_is_for(
    start_server: StartServer,
) -> None:
    server = await start_server(ServerOptions(access=AccessPolicy(token="abc")))
    url = url_of(server)
    env = {"TRIO_WS_DEMO_TOKEN": "abc", "TRIO_WS_DEMO_TOKEN_HOSTS": "chat.example.com"}
    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", url, "hi", env=env) as cli:
            assert await cli.process.wait() == 1
            err = await cli.stderr()
    assert err.splitlines() == [
        "note: not sending $TRIO_WS_DEMO_TOKEN to 127.0.0.1: it goes only to the hosts in "
        "$TRIO_WS_DEMO_TOKEN_HOSTS; use --token to send a token to this host",
        f"Connection error: refused: HTTP 401 missing or wrong token ({url})",
    ]
    port = server.port
    for listed in (f"chat.example.com, 127.0.0.1:{port}", "127.0.0.1"):
        env["TRIO_WS_DEMO_TOKEN_HOSTS"] = listed
        with trio.fail_after(TIMEOUT):
            async with run_cli("echo", url, "hi", env=env) as cli:
                assert await cli.process.wait() == 0, await cli.stderr()
    env["TRIO_WS_DEMO_TOKEN_HOSTS"] = f"127.0.0.1:{port + 1}"  # another port: another server
    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", url, "hi", env=env) as cli:
            assert await cli.process.wait() == 1


async def test_sigterm_closes_a_listener_with_1000(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGTERM used to exit without a close frame; now it closes like Ctrl-C."""
    caplog.set_level(logging.INFO, logger="trio_ws_demo")
    server = await start_server()
    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", "--listen", url_of(server), "hi") as cli:
            await cli.read_until("Server sent:  hi")
            cli.process.send_signal(signal.SIGTERM)
            assert await cli.process.wait() == 0
            assert (await cli.stderr()).endswith("Connection closed\n")
        await trio.testing.wait_all_tasks_blocked()
    closed = [r for r in caplog.records if getattr(r, "event", None) == "closed"]
    assert [r.code for r in closed] == [1000]  # type: ignore[attr-defined]


async def test_a_closed_stdout_pipe_ends_quietly(server: BroadcastServer) -> None:
    """`echo --listen URL | head -1`: once head has gone, exit 0 with no error."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trio_ws_demo", "echo", "--listen", url_of(server), "hi"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    with trio.fail_after(TIMEOUT):
        first = b""
        while b"\n" not in first:
            first += await process.stdout.receive_some(1)
        assert first == b"Client sends: hi\n"
        await process.stdout.aclose()  # head -1 has what it wanted
        server.broadcast("more for nobody")  # its next line meets the closed pipe
        await process.wait()
        err = b""
        while chunk := await process.stderr.receive_some():
            err += chunk
    assert process.returncode == 0
    assert err == b"Connection opened\nConnection closed\n"


async def test_ctrl_c_during_the_handshake_stops_at_once(nursery: trio.Nursery) -> None:
    """A server that accepts TCP but never answers: the first Ctrl-C ends the wait."""
    reached = trio.Event()

    async def silent(stream: trio.SocketStream) -> None:
        async with stream:
            reached.set()
            await trio.sleep_forever()

    listeners = await nursery.start(trio.serve_tcp, silent, 0)
    port = listeners[0].socket.getsockname()[1]
    with trio.fail_after(10):  # far below --timeout 60
        async with run_cli("echo", f"ws://127.0.0.1:{port}", "--timeout", "60") as cli:
            await reached.wait()
            cli.interrupt()
            assert await cli.process.wait() == 130
            err = await cli.stderr()
    assert err == "Interrupted\n"


async def test_ctrl_c_while_waiting_for_an_echo_is_no_missing_echo(
    nursery: trio.Nursery,
) -> None:
    """The echo did not time out; the user stopped waiting: no "No echo ..." line."""
    from trio_websocket import WebSocketRequest, serve_websocket

    async def never_echo(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.get_message()
        await trio.sleep_forever()

    server = await nursery.start(serve_websocket, never_echo, "127.0.0.1", 0, None)
    with trio.fail_after(10):
        async with run_cli("echo", f"ws://127.0.0.1:{server.port}", "hi", "--timeout", "60") as cli:
            await cli.read_until("Client sends: hi")
            cli.interrupt()
            assert await cli.process.wait() == 130
            err = await cli.stderr()
    assert "No echo" not in err
    assert err == "Connection opened\nConnection closed\nInterrupted\n"


@pytest.mark.parametrize(
    ("form", "shown"), [("repr", "b'Hi\\xc3\\xa9'"), ("hex", "4869c3a9"), ("base64", "SGnDqQ==")]
)
async def test_binary_output_forms(server: BroadcastServer, form: str, shown: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with run_cli(
            "echo", url_of(server), "Hié", "--binary", "--binary-output", form
        ) as cli:
            lines = await cli.rest()
            assert await cli.process.wait() == 0
    assert f"Server sent:  {shown}" in lines


async def test_messages_may_follow_options(server: BroadcastServer) -> None:
    """`echo URL --binary hi` used to fail with 'unrecognized arguments: hi'."""
    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", url_of(server), "--binary", "hi", "--count", "2", "ho") as cli:
            lines = await cli.rest()
            assert await cli.process.wait() == 0
    assert lines == [
        "Client sends: b'hi'", "Server sent:  b'hi'", "Client sends: b'ho'", "Server sent:  b'ho'",
    ] * 2  # fmt: skip


async def test_binary_output_raw_writes_the_bytes_exactly(server: BroadcastServer) -> None:
    payload = bytes(range(256))
    with trio.fail_after(TIMEOUT):
        async with run_cli(
            "echo", "--listen", "--count", "0", "--binary-output", "raw", url_of(server)
        ) as cli:
            await cli.log.wait_for("Connection opened")
            server.broadcast(payload)
            server.broadcast("then text")
            got = b""
            assert cli.process.stdout is not None
            while not got.endswith(b"then text\n"):
                got += await cli.process.stdout.receive_some()
            cli.interrupt()
            assert await cli.process.wait() == 0
    assert got == payload + b"Server sent:  then text\n"


async def test_binary_output_raw_is_refused_on_a_terminal() -> None:
    import pty

    primary, secondary = pty.openpty()
    try:
        with trio.fail_after(TIMEOUT):
            done = await trio.run_process(
                [
                    sys.executable,
                    "-m",
                    "trio_ws_demo",
                    "echo",
                    "--binary-output",
                    "raw",
                    "ws://127.0.0.1:9",
                ],
                stdout=secondary,
                capture_stderr=True,
                check=False,
            )
    finally:
        os.close(primary)
        os.close(secondary)
    assert done.returncode == 2
    assert done.stderr.decode().startswith("error: --binary-output raw would write binary")


async def test_json_against_a_server_without_our_subprotocol(nursery: trio.Nursery) -> None:
    """Any server's frames are message events; binary is base64 (frames are not envelopes)."""
    from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

    async def echo_back(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.send_message(await ws.get_message())
        with contextlib.suppress(ConnectionClosed):
            await ws.get_message()  # until the client closes

    server = await nursery.start(serve_websocket, echo_back, "127.0.0.1", 0, None)
    with trio.fail_after(TIMEOUT):
        url = f"ws://127.0.0.1:{server.port}"
        async with run_cli("echo", "--json", "--binary", url, '{"type": "x"}') as cli:
            events = [json.loads(line) for line in await cli.rest()]
            assert await cli.process.wait() == 0
    encoded = base64.b64encode(b'{"type": "x"}').decode()
    assert events == [
        {"event": "opened", "url": url, "subprotocol": None},
        {"event": "sent", "base64": encoded},
        {"event": "message", "base64": encoded},
        {"event": "closed", "code": 1000, "reason": None, "by": "client"},
    ]


def test_the_startup_line_names_a_host_for_every_interface_and_brackets_ipv6() -> None:
    """`--host ""` used to print `ws://:8080`."""
    from trio_ws_demo.cli.serve import listening_line

    assert listening_line(ServerOptions(), "", 8080) == (
        "Listening on ws://0.0.0.0:8080 (chat page: http://0.0.0.0:8080/), auth: open"
    )
    assert listening_line(ServerOptions(), "::", 80) == (
        "Listening on ws://[::]:80 (chat page: http://[::]:80/), auth: open"
    )


def _have_ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(
    not _have_ipv6_loopback(),
    reason="this machine cannot: bind ::1 (no IPv6 loopback; .ci/run tries to enable it)",
)
async def test_ipv6_hosts_print_in_brackets() -> None:
    with trio.fail_after(TIMEOUT):
        async with run_cli("serve", "--host", "::1", "--port", "0") as serve:
            line = await serve.readline()
            assert line.startswith("Listening on ws://[::1]:"), line
            url = line.split()[2]
            async with run_cli("echo", url, "hi") as echo:
                assert await echo.process.wait() == 0
            await serve.log.wait_for("connected")
            async with run_cli("echo", "ws://[::1]:9", "hi") as echo:
                assert await echo.process.wait() == 1
                err = await echo.stderr()
            serve.interrupt()
            assert await serve.process.wait() == 0
    assert "[::1]:" in serve.log.lines[-1]  # the peer, in the 'connected' line
    assert err == "Connection error: connection refused ([::1]:9)\n"


async def test_a_redis_url_that_is_not_redis_is_a_usage_error() -> None:
    with trio.fail_after(TIMEOUT):
        async with run_cli("serve", "--redis", "http://:s3cret@127.0.0.1:6379") as cli:
            assert await cli.process.wait() == 2
            err = await cli.stderr()
    assert err == (
        "error: --redis takes a redis://, rediss://, unix:// or redis+sentinel:// URL, "
        "not 'http://:***@127.0.0.1:6379'\n"
    )
