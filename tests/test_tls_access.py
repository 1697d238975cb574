"""TLS (certificates from trustme), origin and token checks, and client-side failures."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest
import trio
import trustme
from websockets.exceptions import InvalidStatus
from websockets.trio.client import connect

import trio_ws_demo.server.listen
from trio_ws_demo import (
    AccessPolicy,
    ClientError,
    ServerOptions,
    ServerStartupError,
    run_client,
    serve,
)
from trio_ws_demo.server import BroadcastServer

from .conftest import StartServer, client_context, server_context, url_of
from .processes import run_cli

TIMEOUT = 20


@pytest.fixture
async def tls_server(start_server: StartServer, ca: trustme.CA) -> BroadcastServer:
    return await start_server(ServerOptions(ssl_context=server_context(ca)))


def wss_url(server: BroadcastServer) -> str:
    return f"wss://127.0.0.1:{server.port}/"


async def test_wss_with_a_trusted_ca_works(tls_server: BroadcastServer, ca: trustme.CA) -> None:
    with trio.fail_after(TIMEOUT):
        result = await run_client(wss_url(tls_server), ["secret"], ssl_context=client_context(ca))
    assert result.ok


async def test_wss_with_an_unknown_ca_fails_with_one_line(tls_server: BroadcastServer) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(ClientError) as info:
        await run_client(wss_url(tls_server))
    assert "certificate verification failed" in str(info.value)
    assert "--cacert" in str(info.value)


async def test_echo_cli_cacert_and_insecure(
    tls_server: BroadcastServer, ca: trustme.CA, tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    url = wss_url(tls_server)
    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", url, "--cacert", str(ca_file)) as trusted:
            assert await trusted.process.wait() == 0
        async with run_cli("echo", url, "--insecure") as insecure:
            assert await insecure.process.wait() == 0
        async with run_cli("echo", url) as unverified:
            assert await unverified.process.wait() == 1
            err = await unverified.stderr()
    assert err.startswith("Connection error: TLS certificate verification failed")
    assert err.count("\n") == 1


async def test_a_cacert_that_did_not_issue_the_certificate_is_named_not_advised(
    tls_server: BroadcastServer, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", wss_url(tls_server), "--cacert", str(other)) as echo:
            assert await echo.process.wait() == 1
            err = await echo.stderr()
    assert err.startswith("Connection error: TLS certificate verification failed")
    assert err.endswith(f"; {other} did not issue it\n")  # not "pass --cacert FILE"
    assert "pass --cacert" not in err


async def test_serve_cli_over_tls(ca: trustme.CA, tmp_path: Path) -> None:
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file, ca_file = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    args = ["--certfile", str(cert_file), "--keyfile", str(key_file)]
    with trio.fail_after(TIMEOUT):
        async with run_cli("serve", "--port", "0", *args) as server:
            line = await server.readline()
            assert line.startswith("Listening on wss://127.0.0.1:")
            url = line.split()[2]
            async with run_cli("echo", url, "--cacert", str(ca_file)) as echo:
                assert await echo.process.wait() == 0
            # Plain ws:// to a TLS port is dropped during the TLS handshake, not served,
            # and the client says so at once, not after its 30 s timeout.
            with trio.fail_after(10):
                async with run_cli("echo", url.replace("wss:", "ws:"), "--timeout", "30") as plain:
                    assert await plain.process.wait() == 1
                    err = await plain.stderr()
            assert "closed the connection during the WebSocket handshake" in err
            assert "is it a wss:// server?" in err
            server.interrupt()
            assert await server.process.wait() == 0


async def test_serve_accepts_a_combined_certificate_and_key_file(
    ca: trustme.CA, tmp_path: Path
) -> None:
    cert = ca.issue_cert("127.0.0.1")
    combined, ca_file = tmp_path / "both.pem", tmp_path / "ca.pem"
    combined.write_bytes(cert.private_key_pem.bytes() + cert.cert_chain_pems[0].bytes())
    ca.cert_pem.write_to_path(str(ca_file))
    with trio.fail_after(TIMEOUT):
        async with run_cli("serve", "--port", "0", "--certfile", str(combined)) as server:
            url = (await server.readline()).split()[2]
            async with run_cli("echo", url, "--cacert", str(ca_file)) as echo:
                assert await echo.process.wait() == 0
            server.interrupt()
            assert await server.process.wait() == 0


async def test_serve_with_a_missing_certificate_is_one_line(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with run_cli(
            "serve", "--certfile", str(tmp_path / "nope.pem"), "--keyfile", str(tmp_path / "k")
        ) as server:
            assert await server.process.wait() == 1
            err = await server.stderr()
    assert err.startswith("error: cannot load --certfile")
    assert err.count("\n") == 1 and "Traceback" not in err


# -- access control ---------------------------------------------------------


async def handshake_status(url: str, **kwargs: object) -> int:
    """101 if the handshake succeeded, else the HTTP status of the refusal."""
    try:
        async with connect(url, proxy=None, **kwargs):  # type: ignore[arg-type]
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def test_allow_origin_lets_in_only_listed_origins(start_server: StartServer) -> None:
    allowed = frozenset({"https://chat.example", "http://127.0.0.1:8080"})
    server = await start_server(ServerOptions(access=AccessPolicy(allow_origins=allowed)))
    url = url_of(server)
    with trio.fail_after(TIMEOUT):
        assert await handshake_status(url, origin="https://chat.example") == 101
        assert await handshake_status(url, origin="https://evil.example") == 403
        assert await handshake_status(url) == 403  # no Origin at all
        # The server's own chat page (same host and port) is always let in.
        assert await handshake_status(url, origin=f"http://127.0.0.1:{server.port}") == 101
        assert await handshake_status(url, origin="http://127.0.0.1:1") == 403
    assert server.statistics().rejections["origin not allowed"] == 3


async def test_token_as_bearer_header_or_query_parameter(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "s3cret-t0ken"
    server = await start_server(ServerOptions(access=AccessPolicy(token=secret)))
    url = url_of(server)
    with trio.fail_after(TIMEOUT):
        bearer = {"Authorization": f"Bearer {secret}"}
        assert await handshake_status(url, additional_headers=bearer) == 101
        assert await handshake_status(url_of(server, f"/?token={secret}")) == 101
        assert await handshake_status(url) == 401
        assert await handshake_status(url, additional_headers={"Authorization": "Bearer x"}) == 401
        assert await handshake_status(url_of(server, "/?token=wrong")) == 401
        result = await run_client(url, headers=[("Authorization", f"Bearer {secret}")])
        assert result.ok
    assert server.statistics().rejections["missing or wrong token"] == 3
    server_log = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith("websockets")
    )
    assert secret not in server_log
    assert "token=***" in server_log


async def test_echo_cli_sends_its_token(start_server: StartServer) -> None:
    server = await start_server(ServerOptions(access=AccessPolicy(token="abc")))
    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", url_of(server), "--token", "abc") as good:
            assert await good.process.wait() == 0
        async with run_cli("echo", url_of(server)) as bad:
            assert await bad.process.wait() == 1
            err = await bad.stderr()
    assert err == f"Connection error: refused: HTTP 401 missing or wrong token ({url_of(server)})\n"


# -- client failures and startup errors ---------------------------------------


async def test_a_server_that_never_answers_times_out(nursery: trio.Nursery) -> None:
    held: list[trio.SocketStream] = []

    async def hold(stream: trio.SocketStream) -> None:
        held.append(stream)
        await trio.sleep_forever()

    listeners = await nursery.start(trio.serve_tcp, hold, 0)
    port = listeners[0].socket.getsockname()[1]
    with trio.fail_after(TIMEOUT), pytest.raises(ClientError) as info:
        await run_client(f"ws://127.0.0.1:{port}", timeout=0.5)
    assert str(info.value) == f"timed out after 0.5 s opening ws://127.0.0.1:{port}"


async def test_unresolvable_host_is_one_line() -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(ClientError) as info:
        await run_client("ws://no-such-host.invalid:8080")
    assert str(info.value).startswith("cannot resolve host 'no-such-host.invalid'")


async def test_permission_denied_names_the_address(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    # As root the test cannot be refused a low port for real.
    monkeypatch.setattr(trio_ws_demo.server.listen, "_bind_all", refuse)
    with trio.fail_after(TIMEOUT), pytest.raises(ServerStartupError) as info:
        await serve("127.0.0.1", 80)
    assert str(info.value) == (
        "cannot listen on 127.0.0.1:80: permission denied; "
        "use a port above 1023 or run with the needed privileges"
    )
