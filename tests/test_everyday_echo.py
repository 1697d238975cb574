"""`echo` and `serve` for everyday use: what a new user tried, and what they expected.

One test per row of issue 20's table that is settled here; each runs the real
command line against a real server.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trustme

from .conftest import PORT_8080, StartServer, url_of
from .processes import run_cli

TIMEOUT = 15


async def url_recorder(nursery: trio.Nursery) -> tuple[int, list[str]]:
    """A WebSocket echo server that records each request target."""
    from trio_websocket import WebSocketRequest, serve_websocket

    targets: list[str] = []

    async def record(request: WebSocketRequest) -> None:
        targets.append(request.path)
        ws = await request.accept()
        await ws.send_message(await ws.get_message())

    server = await nursery.start(serve_websocket, record, "127.0.0.1", 0, None)
    return server.port, targets


async def test_row1_a_non_ascii_path_is_percent_encoded(nursery: trio.Nursery) -> None:
    port, targets = await url_recorder(nursery)
    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", f"ws://127.0.0.1:{port}/café?q=é", "hi") as cli:
            assert await cli.process.wait() == 0
    assert targets == ["/caf%C3%A9?q=%C3%A9"]


async def test_row1_a_space_in_the_url_is_a_usage_error() -> None:
    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", "ws://127.0.0.1:9/has space", "hi") as cli:
            assert await cli.process.wait() == 2
            err = await cli.stderr()
    assert err == (
        "error: invalid URL 'ws://127.0.0.1:9/has space': a space or control character "
        "in the path; write it as %20\n"
    )


@PORT_8080
@pytest.mark.parametrize("message", ["hello.", "note: disk full", "3.14"])
async def test_row11_without_a_scheme_the_first_argument_is_a_message(
    nursery: trio.Nursery, message: str
) -> None:
    """It goes to the default URL, where a server of ours echoes it."""
    from trio_ws_demo import BroadcastServer, ServerOptions, ServerStartupError

    try:
        await nursery.start(BroadcastServer(ServerOptions(echo=True)).run, "127.0.0.1", 8080)
    except ServerStartupError:
        pytest.skip("127.0.0.1:8080, echo's default URL, is in use on this machine")
    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", message) as cli:
            lines = await cli.rest()
            assert await cli.process.wait() == 0
    assert lines == [f"Client sends: {message}", f"Server sent:  {message}"]


@pytest.mark.parametrize("address", ["localhost:8080", "127.0.0.1:9/room", "[::1]:8080"])
async def test_row11_host_port_without_a_scheme_asks_what_was_meant(address: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", address, "hi") as cli:
            assert await cli.process.wait() == 2
            err = await cli.stderr()
    assert err == f"error: {address!r} has no scheme: did you mean ws://{address} ?\n"


@pytest.mark.parametrize(
    ("typed", "meant", "what"),
    [
        (["ws:/127.0.0.1:8080", "hi"], "ws://127.0.0.1:8080", "is not a WebSocket URL"),
        (["wss:example.com", "hi"], "wss://example.com", "is not a WebSocket URL"),
        (["http://127.0.0.1:8080"], "ws://127.0.0.1:8080", "is not a WebSocket URL"),
        (["//127.0.0.1:8080", "hi"], "ws://127.0.0.1:8080", "has no scheme"),
        (["//localhost/room"], "ws://localhost/room", "has no scheme"),
        (["localhost", "hi"], "ws://localhost", "has no scheme"),
        (["example.com", "hi"], "ws://example.com", "has no scheme"),
        (["10.0.0.7", "hi"], "ws://10.0.0.7", "has no scheme"),
    ],
)
async def test_a_mistyped_url_asks_what_was_meant_not_sends_it(
    typed: list[str], meant: str, what: str
) -> None:
    """Not sent to the default server as a message: one line, exit 2."""
    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", *typed) as cli:
            assert await cli.process.wait() == 2
            err = await cli.stderr()
    assert err == f"error: {typed[0]!r} {what}: did you mean {meant} ?\n"


async def test_row16_a_certificate_without_its_key_says_to_add_keyfile(
    ca: trustme.CA, tmp_path: Path
) -> None:
    cert = ca.issue_cert("127.0.0.1")
    path = tmp_path / "cert.pem"
    path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))  # no key
    with trio.fail_after(TIMEOUT):
        async with run_cli("serve", "--port", "0", "--certfile", str(path)) as serve:
            assert await serve.process.wait() == 1
            err = await serve.stderr()
    assert err == f"error: no private key in {path}: add --keyfile KEY.pem\n"


async def test_row14_raw_output_is_only_what_the_server_sent(start_server: StartServer) -> None:
    server = await start_server()
    with trio.fail_after(TIMEOUT):
        async with run_cli(
            "echo", "--binary", "--binary-output", "raw", url_of(server), "AB"
        ) as cli:
            out = await cli.stdout_bytes()
            assert await cli.process.wait() == 0
            err = await cli.stderr()
    assert out == b"AB"  # the echo, byte for byte, nothing added
    assert "Client sends: b'AB'" in err  # what was sent is a status line here


@pytest.mark.parametrize(
    ("argv", "wanted"),
    [
        (
            ["serve", "--histroy", "10"],
            "trio-ws-demo serve: error: unrecognized arguments: --histroy 10 (did you mean --history?)",
        ),
        (
            ["echo", "--lisen"],
            "trio-ws-demo echo: error: unrecognized arguments: --lisen (did you mean --listen?)",
        ),
        (
            ["serve", "8080"],
            "trio-ws-demo serve: error: unrecognized arguments: 8080 (did you mean --port 8080?)",
        ),
        (
            ["serve", "--port", "99999"],
            "trio-ws-demo serve: error: argument --port: must be between 0 and 65535, not 99999",
        ),
        (
            ["token", "--ttl", "x"],
            "trio-ws-demo token: error: argument --ttl: must be a duration like 90s, 15m, 1h "
            "or 2d, not 'x'",
        ),
    ],
)
async def test_row15_a_typo_gets_the_commands_usage_and_a_suggestion(
    argv: list[str], wanted: str
) -> None:
    with trio.fail_after(TIMEOUT):
        async with run_cli(*argv) as cli:
            assert await cli.process.wait() == 2
            err = await cli.stderr()
    # One line: the error and where to read more, not the usage first (24 lines for serve).
    assert err == f"{wanted}; see trio-ws-demo {argv[0]} --help\n"


async def test_a_mistyped_command_gets_one_line_and_a_suggestion() -> None:
    with trio.fail_after(TIMEOUT):
        async with run_cli("server", "--port", "8080") as cli:
            assert await cli.process.wait() == 2
            err = await cli.stderr()
    assert err.count("\n") == 1 and not err.startswith("usage:")
    assert err.startswith("trio-ws-demo: error: argument COMMAND: invalid choice: ")
    assert err.endswith(" (did you mean serve?); see trio-ws-demo --help\n")


async def test_row9_a_dropped_connection_is_one_line(nursery: trio.Nursery) -> None:
    """The server's TCP connection ends without a close frame: one line says so."""
    opened = trio.Event()
    drop = trio.Event()

    async def drops(stream: trio.SocketStream) -> None:
        from trio_websocket import wrap_server_stream

        async with trio.open_nursery() as inner:
            request = await wrap_server_stream(inner, stream)
            await request.accept()
            opened.set()
            await drop.wait()
            await trio.aclose_forcefully(stream)  # no close frame
            inner.cancel_scope.cancel()

    listeners = await nursery.start(trio.serve_tcp, drops, 0)
    port = listeners[0].socket.getsockname()[1]
    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", "--listen", f"ws://127.0.0.1:{port}/") as cli:
            await opened.wait()
            await cli.log.wait_for("Connection opened")
            drop.set()
            assert await cli.process.wait() == 1
            err = await cli.stderr()
    assert err == "Connection lost (no close frame)\n"


async def test_row10_a_limit_the_server_enforces_is_the_one_reason_given(
    start_server: StartServer,
) -> None:
    from trio_ws_demo import ServerOptions

    server = await start_server(ServerOptions(max_message_size=10))
    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", url_of(server), "this is too long") as cli:
            assert await cli.process.wait() == 1
            err = await cli.stderr()
    assert (
        err.splitlines()
        == [
            "Connection opened",
            "Connection error: the server closed the connection with code 1009 (message too big)",
        ]
    )  # one line for one close  # no "No echo ... within 5 s": it did not time out, the server said why


async def test_row17_without_history_the_resume_says_so_not_that_it_was_lost() -> None:
    """A dropped connection to a server without --history: the resume line names
    the reason (no history kept), not a lost history the server never had."""
    from .conftest import free_port
    from .rigs import Cable
    from .wsraw import http_exchange

    port = free_port()
    with trio.fail_after(30):
        async with run_cli("serve", "--port", str(port)) as serve, trio.open_nursery() as nursery:
            await serve.readline()
            cable = Cable(port)
            relay_port = await nursery.start(cable.serve)
            async with run_cli(
                "echo", "--listen", "--resume", f"ws://127.0.0.1:{relay_port}/r"
            ) as echo:
                await echo.log.wait_for("Connection opened")
                # Its own message back: by then it has the room's epoch, to resume with.
                assert await echo.readline() == "Client sends: Hello, WebSocket!"
                assert await echo.readline() == "Server sent:  Hello, WebSocket!"
                cable.cut()
                # One line for one event: the reconnect line says the connection was lost.
                lost = await echo.log.readline()
                # In the same words as without --resume.
                assert lost.startswith("Connection lost (no close frame); reconnecting in ")
                # A message while it is away, which no history keeps (without one,
                # nothing was missed, and the resume says so: issue 28 item 6).
                body = b"while you were away"
                sent = await http_exchange(port, (
                    f"POST /r HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n").encode() + body)  # fmt: skip
                assert sent.startswith(b"HTTP/1.1 200 OK\r\n")
                cable.restore()
                line = await echo.log.wait_for("Reconnected")
                echo.interrupt()
                await echo.process.wait()
            serve.interrupt()
            nursery.cancel_scope.cancel()
    assert line == (
        "Reconnected; the server keeps no history (--history 0): "
        "messages sent while you were away are missing"
    )


async def test_row8_wss_to_a_plain_server_gets_a_fast_hint(start_server: StartServer) -> None:
    server = await start_server()
    with trio.fail_after(3):  # the server refuses a ClientHello at once (it waited 10 s)
        async with run_cli("echo", "--insecure", f"wss://127.0.0.1:{server.port}/", "hi") as cli:
            assert await cli.process.wait() == 1
            err = await cli.stderr()
    assert err == (
        f"Connection error: TLS handshake with 127.0.0.1:{server.port} failed: the server did "
        f"not answer in TLS; is it a plain ws:// server? try ws://127.0.0.1:{server.port}\n"
    )
    assert server.statistics().rejections["TLS on a plain ws:// port"] == 1


async def test_row12_interactive_sends_the_given_messages_first(start_server: StartServer) -> None:
    server = await start_server()
    with trio.fail_after(TIMEOUT):
        async with run_cli(
            "echo", "-i", "--count", "2", url_of(server), "arg message", "/not a command",
            stdin=b"typed\n",
        ) as cli:  # fmt: skip
            lines = await cli.rest()
            assert await cli.process.wait() == 0
    sent = [line for line in lines if line.startswith("Client sends: ")]
    assert sent == [
        "Client sends: arg message",
        "Client sends: /not a command",
        "Client sends: arg message",
        "Client sends: /not a command",
        "Client sends: typed",
    ]


async def test_row12_interactive_count_without_messages_is_a_usage_error() -> None:
    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", "-i", "--count", "3", "ws://127.0.0.1:9/") as cli:
            assert await cli.process.wait() == 2
            err = await cli.stderr()
    assert err == "error: --count needs messages to send (with -i, before the prompt)\n"


@pytest.fixture
async def node_article_server() -> AsyncIterator[str]:
    """The article's own Node `ws` server (it accepts the first subprotocol offered)."""
    import shutil

    node = shutil.which("node")
    script = Path(__file__).parent.parent / "benchmarks" / "baselines" / "node_article_server.mjs"
    if node is None or not (script.parent.parent / "node_modules" / "ws").is_dir():
        pytest.skip("needs node and `npm ci --prefix benchmarks` (nox -s tests does it)")
    process = await trio.lowlevel.open_process(
        [node, str(script), "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert process.stdout is not None
        line = b""
        with trio.fail_after(TIMEOUT):
            while b"\n" not in line:
                line += await process.stdout.receive_some()
        yield line.decode().split()[2]
    finally:
        process.kill()
        await process.wait()
        if process.stdout is not None:
            await process.stdout.aclose()


async def test_row2_json_against_a_server_that_only_pretends_to_speak_v1(
    node_article_server: str,
) -> None:
    import json

    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", "--json", node_article_server, "to node json") as cli:
            events = [json.loads(line) for line in await cli.rest()]
            assert await cli.process.wait() == 0
    assert events[0]["event"] == "opened" and events[0]["subprotocol"] == "trio-ws-demo.v1"
    assert {"event": "message", "text": "to node json"} in events


async def test_row2_a_message_that_looks_like_an_envelope_is_shown_as_it_is(
    node_article_server: str,
) -> None:
    import json

    text = '{"type": "message", "text": "hi"}'
    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", "--json", node_article_server, text) as cli:
            events = [json.loads(line) for line in await cli.rest()]
            assert await cli.process.wait() == 0
    assert {"event": "message", "text": text} in events  # not unwrapped to "hi"


async def test_row3_offering_v1_by_hand_to_our_server_recognises_the_echo(
    start_server: StartServer,
) -> None:
    server = await start_server()
    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", "--subprotocol", "trio-ws-demo.v1", url_of(server), "hi") as cli:
            lines = await cli.rest()
            assert await cli.process.wait() == 0
    assert lines == ["Client sends: hi", "Server sent:  hi"]


async def test_row4_binary_from_stdin_is_byte_exact(start_server: StartServer) -> None:
    server = await start_server()
    with trio.fail_after(TIMEOUT):
        async with run_cli(
            "echo", "--binary", "--binary-output", "hex", url_of(server), "-",
            stdin=b"\xff\xfe\x00\r\nsecond\n",
        ) as cli:  # fmt: skip
            lines = await cli.rest()
            assert await cli.process.wait() == 0
    assert lines == [
        "Client sends: fffe000d",  # the line's bytes, invalid UTF-8 and its \r included
        "Server sent:  fffe000d",
        "Client sends: 7365636f6e64",
        "Server sent:  7365636f6e64",
    ]


async def test_row4_a_file_is_sent_as_one_message_byte_for_byte(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = await start_server()
    blob = bytes(range(256)) * 40  # 10 KiB, every byte value, newlines included
    path = tmp_path / "blob.bin"
    path.write_bytes(blob)
    with trio.fail_after(TIMEOUT):
        async with run_cli(
            "echo", "--file", str(path), "--binary", "--binary-output", "raw", url_of(server)
        ) as cli:
            out = await cli.stdout_bytes()
            assert await cli.process.wait() == 0
        assert out == blob
        async with run_cli("echo", "--file", str(path), url_of(server)) as cli:
            assert await cli.process.wait() == 2
            assert await cli.stderr() == f"error: {path} is not UTF-8 text: add --binary\n"


async def test_row5_an_interactive_session_survives_a_server_restart() -> None:
    """echo -i --resume (and --listen --resume -): the server restarts while the
    user types; what was typed meanwhile is sent once it is back."""
    from .conftest import free_port

    port = str(free_port())
    with trio.fail_after(30):
        async with run_cli("serve", "--port", port, "--history", "10") as server:
            await server.readline()
            async with run_cli(
                "echo", "-i", "--resume", f"ws://127.0.0.1:{port}/r", typing=True
            ) as echo:
                keyboard = echo.process.stdin
                assert keyboard is not None
                await echo.log.wait_for("Connection opened")
                await keyboard.send_all(b"before\n")
                assert await echo.readline() == "Client sends: before"
                assert await echo.readline() == "Server sent:  before"
                server.process.kill()
                await server.process.wait()
                await echo.log.wait_for("reconnecting in")
                await keyboard.send_all(b"while it was down\n")  # typed meanwhile
                async with run_cli("serve", "--port", port, "--history", "10") as again:
                    await again.readline()
                    await echo.log.wait_for("Reconnected")
                    assert await echo.readline() == "Client sends: while it was down"
                    assert await echo.readline() == "Server sent:  while it was down"
                    await keyboard.send_all(b"after\n")
                    assert await echo.readline() == "Client sends: after"
                    assert await echo.readline() == "Server sent:  after"
                    await keyboard.aclose()  # end of input: close 1000, exit 0
                    assert await echo.process.wait() == 0
                    again.interrupt()


async def test_row7_send_and_check_prints_its_echo_not_the_rooms_history(
    start_server: StartServer,
) -> None:
    """Without --listen echo shows what it sent and the echo; a room's history (and
    other clients' messages) show with --listen."""
    from trio_ws_demo import ServerOptions

    server = await start_server(ServerOptions(history=100))
    for n in range(5):
        server.broadcast(f"old {n}")
    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", url_of(server), "mine") as cli:
            lines = await cli.rest()
            assert await cli.process.wait() == 0
        assert lines == ["Client sends: mine", "Server sent:  mine"]
        async with run_cli("echo", "--listen", url_of(server), "mine again") as cli:
            seen = [await cli.readline() for _ in range(8)]
            cli.interrupt()
            await cli.process.wait()
    assert seen == [
        "Client sends: mine again",
        *(f"Server sent:  old {n}" for n in range(5)),
        "Server sent:  mine",
        "Server sent:  mine again",
    ]


async def test_show_ping_prints_the_servers_pings() -> None:
    from .conftest import free_port

    port = str(free_port())
    with trio.fail_after(TIMEOUT):
        async with run_cli(
            "serve", "--port", port, "--ping-interval", "0.2", "--ping-timeout", "5"
        ) as serve:
            await serve.readline()
            async with run_cli(
                "echo", "--listen", "--show-ping", f"ws://127.0.0.1:{port}/"
            ) as echo:
                await echo.log.wait_for("Connection opened")
                assert await echo.log.wait_for("Ping") == "Ping from the server"
                assert await echo.log.wait_for("Ping") == "Ping from the server"  # and again
                echo.interrupt()
                assert await echo.process.wait() == 0
            serve.interrupt()


def test_control_frames_are_found_however_the_bytes_are_cut() -> None:
    from trio_ws_demo.client.events import ControlFrame
    from trio_ws_demo.client.session import _ControlFrames
    from trio_ws_demo.frames import encode_frame

    wire = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
        + encode_frame("x" * 300)  # a data frame with a 2-byte extended length
        + b"\x89\x02hi"  # ping "hi"
        + encode_frame(b"\x89\x00" * 33_000)  # ping-like bytes inside a 64-bit-length frame
        + b"\x8a\x00"  # pong
    )
    for cut in (1, 3, 4096):
        seen: list[object] = []
        frames = _ControlFrames(seen.append)
        for at in range(0, len(wire), cut):
            frames.feed(wire[at : at + cut])
        assert seen == [ControlFrame("ping", b"hi"), ControlFrame("pong", b"")], cut


async def test_row5_interactive_resume_with_nothing_there_is_one_line() -> None:
    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", "-i", "--resume", "ws://127.0.0.1:9/", stdin=b"") as cli:
            assert await cli.process.wait() == 1
            err = await cli.stderr()
    assert err == "Connection error: connection refused (127.0.0.1:9)\n"
