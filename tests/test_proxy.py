"""Behind a reverse proxy: ``--trusted-proxy`` and ``X-Forwarded-For`` (issue 29, item 5).

The rule itself (pure, :mod:`trio_ws_demo.forwarded`), then a real server: a
trusted peer's header names the client in the connection and access lines, an
untrusted peer's is ignored, a malformed one leaves the peer; each request of a
kept-alive publish connection is its own client. Last, a real nginx with
``docs/nginx.conf`` in front of the server.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request

from trio_ws_demo import ServerOptions
from trio_ws_demo.forwarded import TrustedProxies, parse_network

from .conftest import StartServer
from .processes import run_cli
from .rigs import LogWatch
from .wsraw import RawClient, http_exchange

TIMEOUT = 20
NGINX_CONF = Path(__file__).resolve().parent.parent / "docs" / "nginx.conf"


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


# -- the rule -----------------------------------------------------------------------


def test_the_client_is_the_rightmost_address_that_is_not_a_trusted_proxy() -> None:
    proxies = TrustedProxies.parse(["127.0.0.1", "10.0.0.0/8"])
    # A client's forged entries (left) are never read; the proxies' own are skipped.
    header = ["6.6.6.6, not-even-an-address", "203.0.113.7, 10.1.2.3"]
    assert proxies.client("127.0.0.1", header) == ip("203.0.113.7")
    assert proxies.client("127.0.0.1", ["10.0.0.5, 10.0.0.6"]) == ip("10.0.0.5")  # all trusted
    assert proxies.client("192.0.2.1", ["203.0.113.7"]) is None  # an untrusted peer
    assert proxies.client("127.0.0.1", []) is None
    assert TrustedProxies().client("127.0.0.1", ["203.0.113.7"]) is None  # trust nobody
    # A dual-stack socket's peer, and IPv6 proxies and clients.
    assert proxies.client("::ffff:127.0.0.1", ["203.0.113.7"]) == ip("203.0.113.7")
    six = TrustedProxies.parse(["::1", "fd00::/8"])
    assert six.client("::1", ["2001:db8::1, fd00::2"]) == ip("2001:db8::1")
    assert six.client("127.0.0.1", ["2001:db8::1"]) is None


@pytest.mark.parametrize(
    "header", ["", "203.0.113.7,", "unknown", "203.0.113.7:4711", "fe80::1%eth0", "a.example"]
)
def test_a_header_the_rule_cannot_read_is_malformed(header: str) -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        TrustedProxies.parse(["127.0.0.1"]).client("127.0.0.1", [header])


def test_a_trusted_proxy_is_an_address_or_a_network() -> None:
    assert str(parse_network("10.0.0.0/8")) == "10.0.0.0/8"
    assert str(parse_network("::1")) == "::1/128"
    with pytest.raises(ValueError, match=r"did you mean 10\.0\.0\.0/8"):
        parse_network("10.0.0.1/8")
    with pytest.raises(ValueError, match="not an IP address or network"):
        parse_network("localhost")


async def test_a_bad_trusted_proxy_is_a_usage_error() -> None:
    with trio.fail_after(TIMEOUT):
        async with run_cli("serve", "--port", "0", "--trusted-proxy", "proxy.local") as cli:
            assert await cli.process.wait() == 2
            err = await cli.stderr()
    assert err.count("\n") == 1 and "--trusted-proxy: 'proxy.local' is not an IP" in err


# -- a real server ----------------------------------------------------------------------


def event(records: list[logging.LogRecord], name: str) -> list[logging.LogRecord]:
    return [r for r in records if getattr(r, "event", None) == name]


async def websocket(port: int, *headers: tuple[bytes, bytes], source: str = "") -> RawClient:
    """A WebSocket with extra handshake headers, from *source* (an address of this machine)."""
    local = source or None
    stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=local)
    client = RawClient(stream)
    client.ws = WSConnection(ConnectionType.CLIENT)
    request = Request(host="127.0.0.1", target="/lobby", extra_headers=list(headers))
    await stream.send_all(client.ws.send(request))
    assert isinstance(await client.next_event(), AcceptConnection)
    return client


def get(path: str, *headers: str) -> bytes:
    return ("\r\n".join([f"GET {path} HTTP/1.1", "Host: x", *headers]) + "\r\n\r\n").encode()


def post(path: str, body: bytes, *headers: str, close: bool = False) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: x", f"Content-Length: {len(body)}", *headers]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def a_websocket_and_a_page(port: int, log: LogWatch, *forwarded: bytes) -> None:
    headers = [(b"X-Forwarded-For", value) for value in forwarded]
    client = await websocket(port, *headers)
    await client.stream.send_all(client.close_frame())
    await client.events_until_close()
    await client.stream.aclose()
    await http_exchange(port, get("/lobby", *(f"X-Forwarded-For: {v.decode()}" for v in forwarded)))
    await log.until(
        lambda records: bool(event(records, "closed")) and len(event(records, "access")) == 2
    )


async def test_a_trusted_proxy_names_the_client_in_every_line(start_server: StartServer) -> None:
    server = await start_server(ServerOptions(trusted_proxies=TrustedProxies.parse(["127.0.0.1"])))
    assert server.port is not None
    with trio.fail_after(TIMEOUT), LogWatch() as log:
        await a_websocket_and_a_page(server.port, log, b"198.51.100.9", b"203.0.113.7")
    upgrade, page = event(log.records, "access")
    (opened,) = event(log.records, "opened")
    (closed,) = event(log.records, "closed")
    for record in (upgrade, page, opened, closed):
        assert record.peer == "203.0.113.7", record.getMessage()  # type: ignore[attr-defined]
        assert record.getMessage().startswith("203.0.113.7 ")
    assert upgrade.status == 101 and page.status == 200  # type: ignore[attr-defined]
    assert page.proxy.startswith("127.0.0.1:")  # type: ignore[attr-defined]


async def test_from_an_untrusted_peer_the_header_is_ignored(start_server: StartServer) -> None:
    server = await start_server(ServerOptions(trusted_proxies=TrustedProxies.parse(["10.0.0.0/8"])))
    assert server.port is not None
    with trio.fail_after(TIMEOUT), LogWatch() as log:
        await a_websocket_and_a_page(server.port, log, b"203.0.113.7")
    lines = [
        *event(log.records, "access"),
        *event(log.records, "opened"),
        *event(log.records, "closed"),
    ]
    assert len(lines) == 4
    for record in lines:
        assert record.peer.startswith("127.0.0.1:")  # type: ignore[attr-defined]
        assert "203.0.113.7" not in record.getMessage()
    assert not hasattr(lines[0], "proxy")


async def test_a_malformed_header_from_a_trusted_proxy_leaves_the_proxy(
    start_server: StartServer,
) -> None:
    server = await start_server(ServerOptions(trusted_proxies=TrustedProxies.parse(["127.0.0.1"])))
    assert server.port is not None
    with trio.fail_after(TIMEOUT), LogWatch() as log:
        await http_exchange(server.port, get("/lobby", "X-Forwarded-For: 203.0.113.7, bogus\x9b"))
        await log.until(lambda records: bool(event(records, "access")))
    (access,) = event(log.records, "access")
    assert access.peer.startswith("127.0.0.1:")  # type: ignore[attr-defined]
    said = [r.getMessage() for r in log.records if "X-Forwarded-For" in r.getMessage()]
    assert said and "bogus" in said[0] and "\\x9b" in said[0] and "\x9b" not in said[0]


async def test_each_request_of_a_kept_alive_publish_connection_names_its_own_client(
    start_server: StartServer,
) -> None:
    """A proxy that keeps its upstream connections alive carries many clients' requests
    on one connection: each is resolved from its own header."""
    server = await start_server(ServerOptions(trusted_proxies=TrustedProxies.parse(["127.0.0.1"])))
    assert server.port is not None
    requests = post("/lobby", b"one", "X-Forwarded-For: 203.0.113.1") + post(
        "/lobby", b"two", "X-Forwarded-For: 203.0.113.2", close=True
    )
    with trio.fail_after(TIMEOUT), LogWatch() as log:
        answer = await http_exchange(server.port, requests)
        await log.until(lambda records: len(event(records, "access")) == 2)
    assert answer.count(b"HTTP/1.1 200 OK") == 2
    clients = [(r.peer, r.status) for r in event(log.records, "access")]  # type: ignore[attr-defined]
    assert clients == [("203.0.113.1", 200), ("203.0.113.2", 200)]


# -- a real nginx with docs/nginx.conf ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_through_a_real_nginx_the_log_names_the_client(
    start_server: StartServer, nursery: trio.Nursery, tmp_path: Path
) -> None:
    """The client connects to nginx from 127.0.0.2; nginx to the server from
    127.0.0.1, which is trusted. Every line names 127.0.0.2."""
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if nginx is None:
        pytest.skip("needs nginx (apt-get install nginx)")
    server = await start_server(ServerOptions(trusted_proxies=TrustedProxies.parse(["127.0.0.1"])))
    assert server.port is not None
    port = free_port()
    snippet = NGINX_CONF.read_text()
    assert "server 127.0.0.1:8080;" in snippet and "listen 80;" in snippet
    snippet = snippet.replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{server.port};")
    snippet = snippet.replace("listen 80;", f"listen 127.0.0.1:{port};")
    (tmp_path / "proxy.conf").write_text(snippet)
    temp = "".join(
        f"{kind}_temp_path {tmp_path / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (tmp_path / "nginx.conf").write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"pid {tmp_path / 'nginx.pid'};\nerror_log {tmp_path / 'error.log'} info;\n"
        + "events {}\n"
        + f"http {{\naccess_log off;\n{temp}include {tmp_path / 'proxy.conf'};\n}}\n"
    )
    process = await trio.lowlevel.open_process(
        [nginx, "-p", str(tmp_path), "-e", str(tmp_path / "error.log"),
         "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with trio.fail_after(TIMEOUT), LogWatch() as log:
            while True:  # nginx says nothing when it listens: try until it does (bounded)
                try:
                    await (await trio.open_tcp_stream("127.0.0.1", port)).aclose()
                    break
                except OSError:
                    assert process.poll() is None, (tmp_path / "error.log").read_text()
                    await trio.sleep(0.05)
            client = await websocket(port, source="127.0.0.2")
            await client.send("through nginx")
            assert await client.next_message() == "through nginx"
            page = await http_exchange(port, get("/lobby", "Connection: close"), source="127.0.0.2")
            published = await http_exchange(
                port, post("/lobby", b"hi", close=True), source="127.0.0.2"
            )
            assert await client.next_message() == "hi"
            await client.stream.send_all(client.close_frame())
            await client.events_until_close()
            await client.stream.aclose()
            await log.until(
                lambda records: (
                    bool(event(records, "closed")) and len(event(records, "access")) == 3
                )
            )
    finally:
        process.terminate()
        await process.wait()
    assert page.startswith(b"HTTP/1.1 200 ") and published.startswith(b"HTTP/1.1 200 ")
    lines = [
        *event(log.records, "access"),
        *event(log.records, "opened"),
        *event(log.records, "closed"),
    ]
    assert sorted(r.status for r in event(log.records, "access")) == [101, 200, 200]  # type: ignore[attr-defined]
    for record in lines:
        assert record.peer == "127.0.0.2", record.getMessage()  # type: ignore[attr-defined]
