"""The command line: in-process through main([...]) and as real processes."""

from __future__ import annotations

import signal

import pytest
import trio

from trio_ws_demo import BroadcastServer
from trio_ws_demo.cli import escape, main

from .conftest import url_of
from .processes import listening_port, run_cli

TIMEOUT = 20


# -- in-process: argument handling, no network needed --------------------------


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: trio-ws-demo ")
    commands = [line.split(None, 1) for line in out.splitlines() if line.startswith("    ")]
    assert [name for name, _ in commands] == ["serve", "echo", "token"]
    assert all(help_text.strip() for _, help_text in commands)  # each says what it does


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["serve", "--port", "99999"],
        ["serve", "--max-queue", "0"],
        ["echo", "--timeout", "-1"],
        ["echo", "--count", "x"],
        ["echo", "-H", "no-colon"],
        ["echo", "http://127.0.0.1:8080"],
        ["echo", "ws://127.0.0.1:8080", "--insecure"],
        ["echo", "ws://127.0.0.1:8080", "-", "more"],
    ],
)
def test_usage_errors_exit_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    # argparse's usage may come first; then exactly one line says what is wrong.
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1 and lines[-1] == errors[0], err


def test_serve_on_a_taken_port_says_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"error: cannot listen on 127.0.0.1:{port}: the port is in use; "
        "stop the other server or choose another --port"
    )


def test_serve_on_an_unresolvable_host_fails_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--host", "no-such-host.invalid", "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert "does not resolve" in err and "Traceback" not in err


def test_echo_against_a_closed_port_prints_one_error_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main(["echo", f"ws://127.0.0.1:{port}"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"Connection error: connection refused (127.0.0.1:{port})\n"


def test_escape_neutralises_terminal_control_characters() -> None:
    assert escape("\x1b[2J\x07bell\r\nline\x9b") == "\\x1b[2J\\x07bell\\r\\nline\\x9b"
    assert escape("héllo ☃") == "héllo ☃"
    assert escape(b"\x00\x1b") == "b'\\x00\\x1b'"


# -- real processes -------------------------------------------------------------


async def test_serve_and_echo_end_to_end() -> None:
    with trio.fail_after(TIMEOUT):
        async with run_cli("serve", "--port", "0") as serve:
            port = await listening_port(serve)
            # What the terminal shows, stdout and stderr together: the article's output.
            async with run_cli("echo", f"ws://127.0.0.1:{port}", merged=True) as echo:
                lines = await echo.rest()
                assert await echo.process.wait() == 0
            assert lines == [
                "Connection opened",
                "Client sends: Hello, WebSocket!",
                "Server sent:  Hello, WebSocket!",
                "Connection closed",
            ]
            serve.interrupt()
            assert await serve.process.wait() == 0
            log = await serve.stderr()
    assert "connected (path /, 1 clients)" in log
    assert (
        # echo speaks v1 to check its echo: joined, presence, the echo, its ack.
        "disconnected (path /, code 1000, " in log and "1 messages in, 4 out; peer closed)" in log
    )
    assert "Traceback" not in log


async def test_status_lines_go_to_stderr_and_the_conversation_to_stdout(
    server: BroadcastServer,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", url_of(server), "hi") as echo:
            out = await echo.rest()
            err = await echo.stderr()
            assert await echo.process.wait() == 0
    assert out == ["Client sends: hi", "Server sent:  hi"]
    assert err == "Connection opened\nConnection closed\n"


async def test_the_articles_scenario_three_listeners_see_each_other() -> None:
    hello = "Server sent:  Hello, WebSocket!"
    with trio.fail_after(TIMEOUT):
        async with run_cli("serve", "--port", "0") as serve:
            url = f"ws://127.0.0.1:{await listening_port(serve)}"
            # Started one after another, as in three terminals: each prints its
            # own echo, and every earlier client sees the later one's hello.
            async with run_cli("echo", url, "--listen") as first:
                await first.read_until(hello)
                async with run_cli("echo", url, "--listen") as second:
                    await second.read_until(hello)
                    await first.read_until(hello)
                    async with run_cli("echo", url, "--listen") as third:
                        await third.read_until(hello)
                        await second.read_until(hello)
                        await first.read_until(hello)
                        clients = [first, second, third]
                        for client in clients:
                            client.interrupt()
                        for client in clients:
                            assert await client.process.wait() == 0
                            assert (await client.stderr()).splitlines()[-1] == "Connection closed"
            assert [client.lines.count(hello) for client in clients] == [3, 2, 1]
            serve.interrupt()
            assert await serve.process.wait() == 0


async def test_echo_reads_messages_from_stdin(server: BroadcastServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", url_of(server), "-", stdin=b"one\ntwo\n") as echo:
            lines = await echo.rest()
            assert await echo.process.wait() == 0
    assert lines == [
        "Client sends: one",
        "Server sent:  one",
        "Client sends: two",
        "Server sent:  two",
    ]


async def test_echo_count_binary_and_headers(server: BroadcastServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with run_cli(
            "echo", url_of(server), "hi", "--count", "2", "--binary", "-H", "X-Test: 1"
        ) as echo:
            lines = await echo.rest()
            assert await echo.process.wait() == 0
    assert lines == ["Client sends: b'hi'", "Server sent:  b'hi'"] * 2


async def test_echo_against_nothing_listening_exits_1() -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    await listener.aclose()
    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", f"ws://127.0.0.1:{port}") as echo:
            assert await echo.rest() == []
            assert await echo.process.wait() == 1
            err = await echo.stderr()
    assert err == f"Connection error: connection refused (127.0.0.1:{port})\n"


async def test_sigterm_stops_the_server_cleanly() -> None:
    with trio.fail_after(TIMEOUT):
        async with run_cli("serve", "--port", "0") as serve:
            await listening_port(serve)
            serve.process.send_signal(signal.SIGTERM)
            assert await serve.process.wait() == 0
            assert "Traceback" not in await serve.stderr()


async def test_echo_headers_reach_the_server(nursery: trio.Nursery) -> None:
    """-H NAME:VALUE goes in the handshake request, as given (repeatable)."""
    from trio_websocket import WebSocketRequest, serve_websocket

    seen: list[list[tuple[bytes, bytes]]] = []

    async def record(request: WebSocketRequest) -> None:
        seen.append(list(request.headers))
        ws = await request.accept()
        await ws.send_message(await ws.get_message())

    server = await nursery.start(serve_websocket, record, "127.0.0.1", 0, None)
    with trio.fail_after(TIMEOUT):
        async with run_cli(
            "echo", f"ws://127.0.0.1:{server.port}", "hi", "-H", "X-Test: 1", "-H", "X-Other:two"
        ) as echo:
            assert await echo.process.wait() == 0
    (headers,) = seen
    assert (b"x-test", b"1") in [(k.lower(), v) for k, v in headers]
    assert (b"x-other", b"two") in [(k.lower(), v) for k, v in headers]
