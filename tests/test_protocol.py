"""The server's sans-I/O WebSocket protocol, fed bytes: no sockets, no trio.

Every row of its close state table, the message limit (bytes, and each
continuation frame's cost), UTF-8, pongs only while open, and frames that
arrive with the request head.
"""

from __future__ import annotations

import pytest

from trio_ws_demo.frames import encode_close, encode_frame
from trio_ws_demo.protocol import (
    CLOSE_TABLE,
    FRAME_COST,
    Closed,
    End,
    Message,
    PingReceived,
    ServerProtocol,
    State,
)

from .wsraw import client_frame

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def feed(protocol: ServerProtocol, *frames: bytes) -> list[object]:
    protocol.receive_data(b"".join(frames))
    return list(protocol.events())


def close_payload(code: int, reason: str = "") -> bytes:
    return code.to_bytes(2, "big") + reason.encode()


def test_a_message_comes_with_the_frame_that_relays_it() -> None:
    protocol = ServerProtocol(1000)
    assert feed(protocol, client_frame(TEXT, "héllo".encode())) == [
        Message("héllo", encode_frame("héllo"))
    ]
    assert feed(protocol, client_frame(BINARY, b"\x00\xff")) == [
        Message(b"\x00\xff", encode_frame(b"\x00\xff"))
    ]


def test_fragments_are_joined_and_split_utf8_is_fine() -> None:
    protocol = ServerProtocol(1000)
    data = "snow ☃ man".encode()
    events = feed(
        protocol,
        client_frame(TEXT, data[:6], fin=False),  # cuts ☃ in two
        client_frame(PING, b"mid"),  # control frames may come between fragments
        client_frame(CONTINUATION, data[6:]),
    )
    assert events == [
        PingReceived(bytes([0x8A, 3]) + b"mid"),
        Message("snow ☃ man", encode_frame("snow ☃ man")),
    ]


def test_more_read_says_whether_the_same_read_holds_another_frame() -> None:
    """What a coalesced step asks before it delivers a message: a read of one
    message holds nothing more; in a read of several, only the last does not."""
    protocol = ServerProtocol(1000)
    protocol.receive_data(client_frame(TEXT, b"only"))
    assert [(event, protocol.more_read()) for event in protocol.events()] == [
        (Message("only", encode_frame("only")), False)
    ]
    frames = [client_frame(TEXT, b"one"), client_frame(TEXT, b"two"), client_frame(PING, b"")]
    protocol.receive_data(b"".join(frames) + client_frame(TEXT, b"three")[:3])
    seen = [(type(event).__name__, protocol.more_read()) for event in protocol.events()]
    assert seen == [("Message", True), ("Message", True), ("PingReceived", True)]
    protocol.receive_data(client_frame(TEXT, b"three")[3:])
    assert [protocol.more_read() for _ in protocol.events()] == [False]


def test_bytes_arriving_one_at_a_time_make_the_same_message() -> None:
    protocol = ServerProtocol(1000)
    frame = client_frame(BINARY, bytes(range(200)))
    events: list[object] = []
    for byte in frame:
        events += feed(protocol, bytes([byte]))
    assert events == [Message(bytes(range(200)), encode_frame(bytes(range(200))))]


def test_the_limit_counts_bytes_not_characters() -> None:
    protocol = ServerProtocol(8)
    assert feed(protocol, client_frame(TEXT, b"ab")) != []
    (closed,) = feed(protocol, client_frame(TEXT, "😀😀😀".encode()))  # 3 characters, 12 bytes
    assert closed == Closed(
        End.BAD_INPUT, 1009, "message too big", encode_close(1009, "message too big")
    )
    assert protocol.state is State.CLOSED


def test_each_continuation_frame_costs_frame_cost_bytes() -> None:
    limit = 10 * FRAME_COST
    at_limit = [client_frame(BINARY, b"", fin=False)]
    at_limit += [client_frame(CONTINUATION, b"", fin=False)] * 8
    at_limit += [client_frame(CONTINUATION, b"x" * FRAME_COST)]  # 9 continuations + 64 bytes
    (message,) = feed(ServerProtocol(limit), *at_limit)
    assert isinstance(message, Message) and message.message == b"x" * FRAME_COST
    one_more = [client_frame(BINARY, b"", fin=False)]
    one_more += [client_frame(CONTINUATION, b"", fin=False)] * 11
    events = feed(ServerProtocol(limit), *one_more)
    assert [type(e) for e in events] == [Closed] and events[0].code == 1009  # type: ignore[attr-defined]


def test_a_never_ending_message_of_empty_frames_is_bounded() -> None:
    protocol = ServerProtocol(1024 * 1024)
    events = feed(
        protocol,
        client_frame(TEXT, b"A", fin=False),
        client_frame(CONTINUATION, b"", fin=False) * 20_000,
    )
    assert [type(e) for e in events] == [Closed] and events[0].code == 1009  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (client_frame(TEXT, b"\xff"), 1007),
        (client_frame(TEXT, b"x", masked=False), 1002),
        (client_frame(0x3, b"x"), 1002),
        (client_frame(CONTINUATION, b"x"), 1002),
        (client_frame(PING, b"x", fin=False), 1002),
    ],
    ids=["utf8", "unmasked", "opcode", "continuation", "fragmented-ping"],
)
def test_bad_input_fails_the_connection_with_the_rule_it_broke(data: bytes, code: int) -> None:
    protocol = ServerProtocol(1000)
    (closed,) = feed(protocol, data)
    assert isinstance(closed, Closed)
    reason = {1002: "protocol error", 1007: "invalid UTF-8"}[code]
    assert (closed.end, closed.code, closed.frame) == (
        End.BAD_INPUT,
        code,
        encode_close(code, reason),
    )
    assert protocol.state is State.CLOSED
    assert not CLOSE_TABLE[End.BAD_INPUT].flush


def test_a_peers_close_is_echoed_and_its_own_code_is_a_normal_close() -> None:
    for code in (1000, 1002, 1009, 4000):
        protocol = ServerProtocol(1000)
        (closed,) = feed(protocol, client_frame(CLOSE, close_payload(code, "bye")))
        assert closed == Closed(End.PEER_CLOSED, code, "bye", encode_close(code))
    (empty,) = feed(ServerProtocol(1000), client_frame(CLOSE, b""))
    assert empty == Closed(End.PEER_CLOSED, 1005, "", b"\x88\x00")  # no code back either
    assert CLOSE_TABLE[End.PEER_CLOSED].flush


def test_our_close_then_the_peers_answer() -> None:
    protocol = ServerProtocol(1000)
    assert protocol.start_close(1001, "server shutting down") == encode_close(
        1001, "server shutting down"
    )
    assert protocol.start_close(1008, "again") is None  # one close only
    # While closing: data is dropped and pings get no pong (B4), then the answer ends it.
    events = feed(protocol, client_frame(TEXT, b"late"), client_frame(PING, b"p"))
    assert events == []
    (answer,) = feed(protocol, client_frame(CLOSE, close_payload(1001)))
    assert answer == Closed(End.PEER_CLOSED, 1001, "", None)  # nothing more to send
    assert protocol.state is State.CLOSED
    assert feed(protocol, client_frame(TEXT, b"after")) == []


def test_pongs_from_the_peer_are_only_signs_of_life() -> None:
    assert feed(ServerProtocol(1000), client_frame(PONG, b"")) == []


def test_frames_sent_with_the_request_head_are_kept() -> None:
    protocol = ServerProtocol(1000, early=client_frame(TEXT, b"early"))
    assert feed(protocol) == [Message("early", encode_frame("early"))]
