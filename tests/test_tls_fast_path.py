"""``wss://`` through the idle fast path: records sealed by the outbox are wire-exact.

A :class:`~trio_ws_demo.server.tls.TlsChannel` runs the
connection's TLS from the handshake on and the outbox writes records itself (synchronously for
an idle client, by its writer for a backlog). These tests hold it to the plain
path's rules with independent clients: ``websockets`` over TLS, a raw wsproto
client over trio's SSLStream, and ``openssl s_client`` for a TLS 1.3 key update.
All certificates come from trustme.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import trio
import trio.testing
import trustme
from websockets.trio.client import connect
from wsproto.events import BytesMessage, CloseConnection

from trio_ws_demo import ServerOptions
from trio_ws_demo.frames import encode_frame
from trio_ws_demo.hub import InboxBudget

from .conftest import StartServer, client_context, server_context
from .rigs import payloads, taken_over
from .wsraw import RawClient

TIMEOUT = 30


async def test_websockets_over_tls_reads_every_frame_exactly_while_pinging(
    start_server: StartServer, ca: trustme.CA
) -> None:
    server = await start_server(ServerOptions(ssl_context=server_context(ca)))
    sent = payloads()  # sizes around 125/126, 65535/65536 and 300 KB
    url = f"wss://127.0.0.1:{server.port}/"
    tls = client_context(ca)
    pongs = 0

    async def receiver(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal pongs
        async with connect(url, ssl=tls, proxy=None, compression=None, max_size=None) as ws:
            task_status.started()
            waiting = []
            for n, expected in enumerate(sent):
                assert await ws.recv() == expected
                if n % 10 == 0:  # a ping between frames: its pong is a record too
                    # Not awaited here: the pong may wait behind a 300 KB frame
                    # that this client only reads on its next recv().
                    waiting.append(await ws.ping())
            for pong in waiting:
                await pong.wait()
                pongs += 1
        assert ws.close_code == 1000

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                await nursery.start(receiver)
            for message in sent:
                server.broadcast(message)  # idle clients: sealed and sent from here
    assert pongs == 3 * len(range(0, len(sent), 10))


async def test_a_slow_tls_reader_gets_whole_frames_then_its_1008(
    start_server: StartServer, ca: trustme.CA
) -> None:
    """Records half written are finished, then the close comes at once."""
    server = await start_server(
        ServerOptions(
            ssl_context=server_context(ca),
            budget=InboxBudget(max_messages=1),
            close_timeout=30,
        )
    )
    messages = [b"a" * (16 * 2**20), b"b" * (16 * 2**20)]
    with trio.fail_after(TIMEOUT):
        client = await RawClient.connect(server.port, receive_buffer=16384, tls=client_context(ca))
        await trio.testing.wait_all_tasks_blocked()
        for message in messages:
            server.broadcast(message)  # the second is over the budget of one
        events = await client.events_until_close()
        await client.stream.aclose()
    assert [type(e) for e in events] == [BytesMessage, CloseConnection]
    assert events[0].data == messages[0]  # type: ignore[attr-defined]
    assert events[1].code == 1008  # type: ignore[attr-defined]


async def test_a_tls_close_handshake_completes_after_partial_writes(
    start_server: StartServer, ca: trustme.CA
) -> None:
    server = await start_server(ServerOptions(ssl_context=server_context(ca)))
    big = [bytes([n]) * 100_000 for n in range(10)]
    with trio.fail_after(TIMEOUT):
        slow = await RawClient.connect(server.port, receive_buffer=16384, tls=client_context(ca))
        await trio.testing.wait_all_tasks_blocked()
        for message in big:
            server.broadcast(message)
        got: list[bytes] = []
        while sum(len(g) for g in got) < sum(len(m) for m in big):
            event = await slow.next_event()
            data = getattr(event, "data", None)
            if isinstance(data, (bytes, bytearray)):
                got.append(bytes(data))
        await slow.stream.send_all(slow.close_frame())
        events = await slow.events_until_close()
        await slow.stream.aclose()
    assert b"".join(got) == b"".join(big)
    assert events[-1].code == 1000  # type: ignore[attr-defined]


async def test_a_tls13_key_update_keeps_the_connection(
    start_server: StartServer, ca: trustme.CA, tmp_path: Path
) -> None:
    """openssl s_client sends a KeyUpdate asking for ours (its 'K' command). Once
    the server has read it (a ping behind it has its pong), every record after
    it, the pong and a broadcast from ``publish()``, is sealed under the new keys
    with our own KeyUpdate ahead of them (OpenSSL puts it in front of the next
    record it seals), and the client reads them. (Records made while reading,
    the other order to keep, are held to it by
    ``test_records_made_outside_a_write_wait_for_the_records_before_them``.)"""
    openssl = shutil.which("openssl")
    if openssl is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install openssl (see .ci/run)")
        pytest.skip("needs openssl (apt-get install openssl; CI installs it)")
    server = await start_server(ServerOptions(ssl_context=server_context(ca)))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    process = await trio.lowlevel.open_process(
        [openssl, "s_client", "-connect", f"127.0.0.1:{server.port}", "-tls1_3", "-crlf",
         "-no_ign_eof", "-CAfile", str(ca_file), "-servername", "127.0.0.1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdin is not None and process.stdout is not None
    seen = b""

    async def until(marker: bytes) -> None:
        nonlocal seen
        assert process.stdout is not None
        while marker not in seen:
            chunk = await process.stdout.receive_some()
            assert chunk, seen.decode(errors="replace")
            seen += chunk

    try:
        with trio.fail_after(TIMEOUT):
            await until(b"Verify return code: 0 (ok)")
            upgrade = (
                "GET / HTTP/1.1\nHost: 127.0.0.1\nUpgrade: websocket\nConnection: Upgrade\n"
                "Sec-WebSocket-Version: 13\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n\n"
            )
            await process.stdin.send_all(upgrade.encode())
            await until(b"101 Switching Protocols")
            server.broadcast("before the key update")
            await until(b"before the key update")
            await process.stdin.send_all(b"K\n")  # KeyUpdate, update_requested
            await until(b"KEYUPDATE")
            # s_client says KEYUPDATE before it sends it; a ping sent after it makes
            # sure the server has read the KeyUpdate (and made its answer) before we
            # broadcast. The line's end is the ping's payload: -crlf turns "\n" into
            # "\r\n", the two masked payload bytes of a client ping of length 2.
            await process.stdin.send_all(bytes([0x89, 0x82, 1, 2, 3, 4]) + b"\n")
            await until(b"\x8a\x02" + bytes([0x0D ^ 1, 0x0A ^ 2]))  # its pong, unmasked
            server.broadcast("after the key update")
            await until(b"after the key update")
            assert server.statistics().clients == 1  # before we kill the client, not after
    finally:
        process.kill()
        await process.wait()
        await process.stdin.aclose()
        await process.stdout.aclose()


async def test_records_made_outside_a_write_wait_for_the_records_before_them(
    ca: trustme.CA, nursery: trio.Nursery
) -> None:
    """A record TLS makes while reading (an alert, say) is written after what
    was sealed before it: here a close_notify made while a 1 MB frame is still
    half in the kernel. Sent at once, it would overtake the frame's records,
    and the peer would fail on their sequence numbers."""
    with trio.fail_after(TIMEOUT):
        async with taken_over(ca, nursery, send_buffer=16384) as (channel, outbox, client):
            frame = encode_frame(b"x" * 1_000_000)
            assert outbox.offer(frame, len(frame))
            assert outbox.queued_messages == 1  # the kernel took only part of it
            outbox.send_wire_nowait(channel.close_notify())
            received = b""
            while chunk := await client.receive_some():
                received += chunk
    assert received == frame


async def test_offering_to_a_connection_whose_tls_failed_does_not_raise(
    ca: trustme.CA, nursery: trio.Nursery
) -> None:
    """``offer()`` runs inside whoever published: after this connection's TLS
    failed on a forged record, sealing for it must mark it broken, not throw an
    SSLError into the publisher (which would end *its* connection)."""
    with trio.fail_after(TIMEOUT):
        async with taken_over(ca, nursery) as (channel, outbox, client):
            # An application-data record whose MAC cannot verify.
            await client.transport_stream.send_all(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)
            with pytest.raises(trio.BrokenResourceError):
                await channel.receive_some()
            frame = encode_frame("after the failure")
            assert outbox.offer(frame, len(frame))  # no SSLError out of here
            assert not outbox.writable


async def test_keepalive_pings_are_sealed_too(start_server: StartServer, ca: trustme.CA) -> None:
    """The server-wide keepalive writes its ping with send_control_nowait(), from
    outside any connection's task: under TLS it must be a record, in order."""
    from wsproto.events import Ping

    server = await start_server(
        ServerOptions(ssl_context=server_context(ca), ping_interval=0.05, ping_timeout=30)
    )
    with trio.fail_after(TIMEOUT):
        client = await RawClient.connect(server.port, tls=client_context(ca))
        server.broadcast("before")
        seen = [await client.next_event(), await client.next_event()]  # in either order
        assert sorted(type(e).__name__ for e in seen) == ["Ping", "TextMessage"]
        assert [getattr(e, "data", None) for e in seen if not isinstance(e, Ping)] == ["before"]
        server.broadcast("after")  # one ping until --ping-timeout: nothing else comes
        assert await client.next_message() == "after"
        await client.stream.aclose()
