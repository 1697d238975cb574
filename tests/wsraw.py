"""A minimal raw WebSocket client on wsproto, for what polite clients never do.

It can stop reading, vanish without a close, or send a message and its close
frame in one write; tests use it to drive the server into those corners.
"""

from __future__ import annotations

import json
import socket
import ssl
from typing import Any

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate


class RawClient:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.wire_bytes = 0
        """Bytes read from the server after the handshake's first read."""
        self.deflate: PerMessageDeflate | None = None
        """The permessage-deflate the server agreed, if it did."""

    @classmethod
    async def over(cls, stream: trio.abc.Stream) -> RawClient:
        """Handshake over any stream (a memory stream, for virtual-clock tests)."""
        client = cls(stream)  # type: ignore[arg-type]
        await stream.send_all(client.ws.send(Request(host="127.0.0.1", target="/")))
        event = await client.next_event()
        assert isinstance(event, AcceptConnection), event
        return client

    @classmethod
    async def connect(
        cls,
        port: int,
        *,
        receive_buffer: int | None = None,
        tls: ssl.SSLContext | None = None,
        target: str = "/",
        subprotocols: list[str] | None = None,
        deflate: bool = False,
    ) -> RawClient:
        sock = trio.socket.socket()
        if receive_buffer is not None:
            # Set before connect so the TCP window stays small.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        await sock.connect(("127.0.0.1", port))
        stream: trio.abc.Stream = trio.SocketStream(sock)
        if tls is not None:
            stream = trio.SSLStream(stream, tls, server_hostname="127.0.0.1")
            await stream.do_handshake()
        client = cls(stream)  # type: ignore[arg-type]
        # wsproto's own permessage-deflate: it inflates with context takeover
        # unless we agreed otherwise, so a wrong window shows as wrong text.
        offer = [PerMessageDeflate()] if deflate else []
        request = Request(
            host="127.0.0.1", target=target, subprotocols=subprotocols or [], extensions=offer
        )
        await client.stream.send_all(client.ws.send(request))
        event = await client.next_event()
        assert isinstance(event, AcceptConnection), event
        for extension in event.extensions:
            if isinstance(extension, PerMessageDeflate):
                client.deflate = extension
        client.wire_bytes = 0
        return client

    async def next_event(self) -> Event:
        while True:
            for event in self.ws.events():
                return event
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError("the server closed the TCP connection")
            self.wire_bytes += len(data)
            self.ws.receive_data(data)

    async def next_message(self) -> str | bytes:
        """The next whole message (fragments joined); fails on anything else."""
        parts: list[Message[str] | Message[bytes]] = []
        while True:
            event = await self.next_event()
            assert isinstance(event, (TextMessage, BytesMessage)), event
            parts.append(event)
            if event.message_finished:
                if isinstance(event, TextMessage):
                    return "".join(p.data for p in parts)  # type: ignore[misc]
                return b"".join(p.data for p in parts)  # type: ignore[misc]

    async def events_until_close(self) -> list[Event]:
        """Whole messages (fragments joined) up to and including the close frame."""
        events: list[Event] = []
        parts: list[Message[str] | Message[bytes]] = []
        while True:
            try:
                event = await self.next_event()
            except EOFError:
                return events
            if isinstance(event, (TextMessage, BytesMessage)):
                parts.append(event)
                if not event.message_finished:
                    continue
                data = (
                    "".join(p.data for p in parts)
                    if isinstance(event, TextMessage)
                    else b"".join(p.data for p in parts)
                )  # type: ignore[misc]
                event = type(event)(data=data)
                parts = []
            events.append(event)
            if isinstance(event, CloseConnection):
                return events

    async def send(self, message: str | bytes) -> None:
        event: Message[str] | Message[bytes]
        event = TextMessage(message) if isinstance(message, str) else BytesMessage(message)
        await self.stream.send_all(self.ws.send(event))

    def frame(self, message: str | bytes) -> bytes:
        event = TextMessage(message) if isinstance(message, str) else BytesMessage(message)
        return self.ws.send(event)

    def close_frame(self, code: int = 1000) -> bytes:
        return self.ws.send(CloseConnection(code=code))

    async def vanish(self) -> None:
        """Drop the TCP connection at once (RST), without a close frame."""
        self.stream.socket.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
        )
        await self.stream.aclose()


def client_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    claimed_length: int | None = None,
) -> bytes:
    """A hand-made client frame, able to break every rule (for bad-input tests)."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    length = len(payload) if claimed_length is None else claimed_length
    mask_bit = 0x80 if masked else 0
    if length < 126:
        header = bytes([first, mask_bit | length])
    elif length < 1 << 16:
        header = bytes([first, mask_bit | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([first, mask_bit | 127]) + length.to_bytes(8, "big")
    if not masked:
        return header + payload
    key = b"\x01\x02\x03\x04"
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def http_exchange(port: int, request: bytes, source: str = "") -> bytes:
    """Send raw bytes, return everything the server answers before it closes
    (from the local address *source*, e.g. 127.0.0.2, if given)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=source or None)
    async with stream:
        await stream.send_all(request)
        answer = b""
        while chunk := await stream.receive_some(65536):
            answer += chunk
    return answer


def upgrade_request(
    *, version: str = "13", key: str | None = "dGhlIHNhbXBsZSBub25jZQ==", extra: str = ""
) -> bytes:
    lines = [
        "GET / HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Version: {version}",
    ]
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


async def post_once(
    port: int, path: str, body: bytes, content_type: str, *headers: str
) -> tuple[int, Any]:
    """One ``POST`` on its own connection: the status and the decoded JSON answer."""
    extra = "".join(f"{header}\r\n" for header in headers)
    request = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n{extra}"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    answer = await http_exchange(port, request)
    head, _, payload = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)
