"""permessage-deflate (RFC 7692): negotiation, bounded inflating, and both outbound modes.

The clients are independent implementations that inflate with context
takeover unless told otherwise: wsproto's ``PerMessageDeflate`` (in
:class:`~tests.wsraw.RawClient`, which also counts the bytes on the wire) and
``websockets`` (its Trio client offers the extension by default). A frame
compressed against the wrong window shows up as a zlib error or as wrong
text, and every test compares the text exactly.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import zlib
from pathlib import Path

import pytest
import trio
from trio.testing import wait_all_tasks_blocked
from websockets.trio.client import ClientConnection, connect
from wsproto.events import CloseConnection

from trio_ws_demo.deflate import ClientDeflate, FrameStream
from trio_ws_demo.extensions import Agreement, Compression, negotiate, parse_extensions
from trio_ws_demo.frames import encode_frame, payload_offset
from trio_ws_demo.hub import InboxBudget, SlowClientPolicy
from trio_ws_demo.inflate import Inflater, TooBig
from trio_ws_demo.protocol import Closed, Message, ServerProtocol
from trio_ws_demo.server import ServerOptions

from .conftest import StartServer, url_of
from .wsraw import RawClient, client_frame, http_exchange, upgrade_request

MODES = [Compression.STATELESS, Compression.ROOM]

_WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "it",
    "for",
    "was",
    "on",
    "are",
    "as",
    "with",
    "his",
    "they",
    "at",
    "be",
    "this",
    "from",
    "have",
    "or",
    "by",
    "one",
    "had",
    "not",
    "but",
    "what",
    "all",
    "were",
    "when",
    "we",
    "there",
    "can",
    "an",
    "your",
    "which",
    "their",
    "said",
    "if",
    "do",
    "will",
    "each",
    "about",
    "how",
    "up",
    "out",
    "them",
    "then",
    "she",
    "many",
    "some",
    "so",
    "these",
    "would",
    "other",
    "into",
    "has",
    "more",
    "her",
    "two",
    "like",
    "him",
    "see",
    "time",
    "could",
    "no",
    "make",
    "than",
    "first",
    "been",
    "its",
    "who",
    "now",
    "people",
    "my",
    "made",
    "over",
    "did",
    "down",
    "only",
    "way",
    "find",
    "use",
    "may",
    "water",
    "long",
    "little",
    "very",
    "after",
    "words",
    "called",
    "just",
    "where",
    "most",
    "know",
]


def chat(count: int, seed: int = 1, words: int = 14) -> list[str]:
    """Chat-sized JSON messages of English-like text (random common words)."""
    rng = random.Random(seed)
    return [
        json.dumps(
            {
                "type": "chat",
                "user": rng.choice(["alice", "bob", "carol", "dave"]),
                "text": " ".join(rng.choice(_WORDS) for _ in range(rng.randint(words, 2 * words))),
                "n": n,
            }
        )
        for n in range(count)
    ]


def _compress(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


# -- negotiation (sans-I/O) ----------------------------------------------------


def test_offers_are_parsed_with_their_parameters() -> None:
    header = 'permessage-deflate; client_max_window_bits; server_max_window_bits="10", x-foo'
    assert parse_extensions(header) == [
        (
            "permessage-deflate",
            [("client_max_window_bits", None), ("server_max_window_bits", "10")],
        ),
        ("x-foo", []),
    ]
    assert parse_extensions("") == []


@pytest.mark.parametrize(
    "header",
    ["permessage-deflate;", "; permessage-deflate", "permessage-deflate; a=", 'a; b="c d"', "a b"],
)
def test_a_header_that_breaks_the_grammar_is_an_error(header: str) -> None:
    with pytest.raises(ValueError):
        parse_extensions(header)


def test_we_always_ask_for_client_no_context_takeover() -> None:
    offers = parse_extensions("permessage-deflate; client_max_window_bits")
    room = negotiate(offers, Compression.ROOM)
    assert room is not None and room.takeover and room.window_bits == 15
    assert room.response == "permessage-deflate; client_no_context_takeover"
    stateless = negotiate(offers, Compression.STATELESS)
    assert stateless is not None and not stateless.takeover
    assert stateless.response == (
        "permessage-deflate; client_no_context_takeover; server_no_context_takeover"
    )
    assert negotiate(offers, Compression.OFF) is None


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; unknown",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=09",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "x-webkit-deflate-frame",
    ],
)
def test_offers_we_cannot_accept_are_declined(offer: str) -> None:
    assert negotiate(parse_extensions(offer), Compression.ROOM) is None


def test_the_first_acceptable_offer_wins_and_a_small_window_is_kept() -> None:
    offers = parse_extensions(
        "permessage-deflate; bogus, permessage-deflate; server_max_window_bits=10"
    )
    agreement = negotiate(offers, Compression.ROOM)
    assert agreement is not None and agreement.window_bits == 10
    assert agreement.response.endswith("; server_max_window_bits=10")


# -- outbound: which copy each client gets (sans-I/O) ------------------------------


class _Inflating:
    """A client's inflater with context takeover, as a browser keeps it."""

    def __init__(
        self, agreement: Agreement, joins_at: int = 0, misses: frozenset[int] = frozenset()
    ):
        self.deflate = ClientDeflate(agreement)
        self.zlib = zlib.decompressobj(-15)
        self.joins_at, self.misses = joins_at, misses
        self.got: list[bytes] = []
        self.room_copies = 0

    def offer(self, n: int, frame: bytes) -> None:
        if n < self.joins_at:
            return
        chosen = self.deflate.pick(frame)
        if n in self.misses:  # picked, then not taken (over its budget)
            self.deflate.missed()
            return
        payload = chosen[payload_offset(chosen) :]
        if chosen[0] & 0x40:
            self.room_copies += chosen is not getattr(frame, "_stateless", None)
            payload = self.zlib.decompress(payload + b"\x00\x00\xff\xff")
        self.got.append(payload)


@pytest.mark.parametrize("mode", MODES)
def test_each_client_inflates_each_copy_it_picked(mode: Compression) -> None:
    """Against a real zlib inflater that keeps its window: a steady client, a
    joiner, one that misses frames, one asking for no context takeover and one
    with a small window, over more than the room compressor's 32 KiB window."""
    full = negotiate(parse_extensions("permessage-deflate"), mode)
    own = negotiate(parse_extensions("permessage-deflate; server_no_context_takeover"), mode)
    small = negotiate(parse_extensions("permessage-deflate; server_max_window_bits=9"), mode)
    assert full and own and small
    clients = [
        _Inflating(full),
        _Inflating(full, joins_at=100),
        _Inflating(full, misses=frozenset({5, 50, 51, 300})),
        _Inflating(own),
        _Inflating(small),
    ]
    stream = FrameStream(mode)
    messages = [m.encode() for m in chat(600, words=10)] + [b"x" * 700]
    for n, message in enumerate(messages):
        frame = stream.share(encode_frame(message))
        for client in clients:
            client.offer(n, frame)
    steady, joiner, missing, no_takeover, windowed = clients
    assert steady.got == messages
    assert joiner.got == messages[100:]
    assert missing.got == [m for n, m in enumerate(messages) if n not in missing.misses]
    assert no_takeover.got == windowed.got == messages
    if mode is Compression.ROOM:
        assert steady.room_copies == len(messages)
        # In sync again once 32 KiB of the room's traffic went by without a gap.
        assert 0 < joiner.room_copies < len(messages) - 100 - 100
        assert 0 < missing.room_copies < steady.room_copies
        assert no_takeover.room_copies == windowed.room_copies == 0


def test_a_joiner_gets_in_sync_even_when_frames_do_not_compress() -> None:
    """Random payloads: compressed on their own they are larger than raw, yet an
    out-of-sync client gets them compressed, or it would never catch up."""
    full = negotiate(parse_extensions("permessage-deflate"), Compression.ROOM)
    assert full is not None
    steady, joiner = _Inflating(full), _Inflating(full, joins_at=10)
    stream = FrameStream(Compression.ROOM)
    messages = [random.Random(n).randbytes(1000) for n in range(60)]
    for n, message in enumerate(messages):
        frame = stream.share(encode_frame(message))
        steady.offer(n, frame)
        joiner.offer(n, frame)
    assert steady.got == messages and joiner.got == messages[10:]
    assert joiner.room_copies == 60 - 10 - 33  # after 33 frames of 1,000 bytes: 32 KiB


# -- inbound: a bound on what comes out ------------------------------------------


def test_a_bomb_stops_at_the_bound() -> None:
    bomb = _compress(b"\0" * (64 * 1024 * 1024))
    inflater = Inflater(1024 * 1024)
    inflater.start()
    with pytest.raises(TooBig):
        inflater.feed(bomb)
    assert not inflater.active  # its zlib state is gone too


def test_a_compressed_message_arrives_whole_and_inflated() -> None:
    protocol = ServerProtocol(1024, deflate=True)
    packed = _compress(b"hello " * 100)
    protocol.receive_data(client_frame(0x1, packed[:3], fin=False, rsv=4))
    protocol.receive_data(client_frame(0x9, b"ping") + client_frame(0x0, packed[3:]))
    events = list(protocol.events())
    assert [e.message for e in events if isinstance(e, Message)] == ["hello " * 100]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (client_frame(0x1, _compress(b"x" * 2000), rsv=4), 1009),  # inflates past 1,024
        (client_frame(0x1, b"\xff\xff\xff", rsv=4), 1007),  # not deflate data
        (client_frame(0x9, b"", rsv=4), 1002),  # RSV1 on a control frame
        (client_frame(0x1, b"", fin=False) + client_frame(0x0, b"", rsv=4), 1002),
    ],
)
def test_bad_compressed_input_fails_with_its_code(frame: bytes, code: int) -> None:
    protocol = ServerProtocol(1024, deflate=True)
    protocol.receive_data(frame)
    closed = [e for e in protocol.events() if isinstance(e, Closed)]
    assert closed and closed[0].code == code


# -- a real server ---------------------------------------------------------------


async def test_a_compression_bomb_is_closed_with_1009(start_server: StartServer) -> None:
    server = await start_server(
        ServerOptions(compression=Compression.STATELESS, max_message_size=64 * 1024)
    )
    with trio.fail_after(10):
        client = await RawClient.connect(server.port, deflate=True)
        assert client.deflate is not None
        await client.stream.send_all(
            client_frame(0x2, _compress(b"\0" * (16 * 1024 * 1024)), rsv=4)
        )
        events = await client.events_until_close()
        await client.stream.aclose()
    assert isinstance(events[-1], CloseConnection) and events[-1].code == 1009


async def test_a_malformed_extensions_header_gets_400(start_server: StartServer) -> None:
    server = await start_server(ServerOptions(compression=Compression.ROOM))
    assert server.port is not None
    with trio.fail_after(10):
        answer = await http_exchange(
            server.port,
            upgrade_request(extra="Sec-WebSocket-Extensions: permessage-deflate; =x\r\n"),
        )
    assert answer.startswith(b"HTTP/1.1 400 ")


async def test_a_declined_offer_still_connects_uncompressed(start_server: StartServer) -> None:
    server = await start_server(ServerOptions(compression=Compression.ROOM))
    assert server.port is not None
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            await stream.send_all(
                upgrade_request(extra="Sec-WebSocket-Extensions: permessage-deflate; nope\r\n")
            )
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += await stream.receive_some(65536)
    head = answer.partition(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 101 ") and b"sec-websocket-extensions" not in head


async def test_off_negotiates_nothing(start_server: StartServer) -> None:
    server = await start_server(ServerOptions())
    with trio.fail_after(10):
        client = await RawClient.connect(server.port, deflate=True)
        assert client.deflate is None
        await client.vanish()


async def _read_until(client: RawClient, last: str, into: list[str | bytes]) -> None:
    while not into or into[-1] != last:
        into.append(await client.next_message())


async def _read_all(client: RawClient, count: int, into: list[str | bytes]) -> None:
    for _ in range(count):
        into.append(await client.next_message())


@pytest.mark.parametrize("mode", MODES)
async def test_every_client_reads_every_frame_joiners_and_droppers_too(
    start_server: StartServer, mode: Compression
) -> None:
    """A steady reader, one that offers nothing, a joiner mid-stream and a stuck
    client whose budget drops frames: each reads exactly what it was sent."""
    budget = InboxBudget(max_messages=8, max_bytes=8 * 1024 * 1024)
    server = await start_server(
        ServerOptions(
            compression=mode, budget=budget, slow_client=SlowClientPolicy.DROP, ping_interval=None
        )
    )
    messages = chat(300, words=40)
    with trio.fail_after(60):
        steady = await RawClient.connect(server.port, deflate=True)
        plain = await RawClient.connect(server.port)
        stuck = await RawClient.connect(server.port, deflate=True, receive_buffer=4096)
        assert steady.deflate is not None and stuck.deflate is not None and plain.deflate is None
        got: dict[str, list[str | bytes]] = {"steady": [], "plain": [], "joiner": []}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_read_all, steady, len(messages), got["steady"])
            nursery.start_soon(_read_all, plain, len(messages), got["plain"])
            for n, message in enumerate(messages):
                if n == 150:
                    joiner = await RawClient.connect(server.port, deflate=True)
                    nursery.start_soon(_read_all, joiner, 150, got["joiner"])
                server.broadcast(message)
                if n % 4 == 3:
                    await wait_all_tasks_blocked()  # the readers keep up
        assert got["steady"] == messages
        assert got["plain"] == messages
        assert got["joiner"] == messages[150:]
        assert server.statistics().dropped > 0
        # The stuck client reads at last: what it kept, in order, then what follows.
        after = chat(40, seed=2, words=40)
        kept: list[str | bytes] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_read_until, stuck, after[-1], kept)
            # No event says "its queue is drained" (the budget counts what is
            # written): poll, bounded by the fail_after above.
            while server.statistics().queued_messages:  # noqa: ASYNC110
                await trio.sleep(0.01)
            for message in after:
                server.broadcast(message)
        assert kept[-len(after) :] == after
        kept = kept[: -len(after)]
        assert 0 < len(kept) < len(messages)
        assert kept == [m for m in messages if m in set(kept)]  # a subsequence, exact
        for client in (steady, plain, stuck, joiner):
            await client.vanish()


@pytest.mark.parametrize(("mode", "most"), [(Compression.STATELESS, 0.95), (Compression.ROOM, 0.5)])
async def test_fewer_bytes_cross_the_wire(
    start_server: StartServer, mode: Compression, most: float
) -> None:
    server = await start_server(ServerOptions(compression=mode))
    messages = chat(200)
    with trio.fail_after(30):
        deflated = await RawClient.connect(server.port, deflate=True)
        plain = await RawClient.connect(server.port)
        for message in messages:
            server.broadcast(message)
        for client in (deflated, plain):
            assert [await client.next_message() for _ in messages] == messages
    assert deflated.wire_bytes < most * plain.wire_bytes
    for client in (deflated, plain):
        await client.vanish()


@pytest.mark.parametrize("mode", MODES)
async def test_the_websockets_client_reads_and_sends_compressed(
    start_server: StartServer, mode: Compression
) -> None:
    """websockets offers permessage-deflate by default and compresses what it
    sends: both directions go through the extension."""
    server = await start_server(ServerOptions(compression=mode))
    messages = chat(100)
    with trio.fail_after(30):
        async with connect(url_of(server)) as sender, connect(url_of(server)) as reader:
            answer = reader.response.headers["Sec-WebSocket-Extensions"]
            assert answer.startswith("permessage-deflate; client_no_context_takeover")
            for message in messages:
                await sender.send(message)
            assert [await reader.recv() for _ in messages] == messages
            # (The sender gets them too: read, or websockets stops reading and
            # cannot see our close frame.)
            assert [await sender.recv() for _ in messages] == messages


async def _texts(client: ClientConnection, count: int) -> list[str]:
    """The texts of the next *count* v1 messages (presence frames skipped)."""
    texts: list[str] = []
    while len(texts) < count:
        frame = json.loads(await client.recv())
        if frame["type"] == "message":
            texts.append(frame["text"])
    return texts


@pytest.mark.parametrize("mode", MODES)
async def test_a_v1_joiner_gets_history_raw_and_live_frames_compressed(
    start_server: StartServer, mode: Compression
) -> None:
    """Per-client frames (joined, history) are never compressed, and do not
    disturb the compressed stream that follows."""
    server = await start_server(ServerOptions(compression=mode, history=20))
    messages = chat(60)
    with trio.fail_after(30):
        async with connect(url_of(server), subprotocols=["trio-ws-demo.v1"]) as early:  # type: ignore[list-item]
            for message in messages[:30]:
                server.broadcast(message)
            async with connect(url_of(server), subprotocols=["trio-ws-demo.v1"]) as late:  # type: ignore[list-item]
                for message in messages[30:]:
                    server.broadcast(message)
                first = json.loads(await late.recv())
                assert first["type"] == "joined"
                assert await _texts(late, 50) == messages[10:]
                assert await _texts(early, 60) == messages


NODE = shutil.which("node")
NODE_DIR = Path(__file__).parent / "node"


@pytest.mark.parametrize("mode", MODES)
async def test_node_ws_reads_every_frame_a_joiner_too(
    start_server: StartServer, mode: Compression
) -> None:
    if not (NODE and (NODE_DIR / "node_modules" / "ws").is_dir()):
        if os.environ.get("CI"):
            pytest.fail("CI must install node and tests/node (see .ci/run)")
        pytest.skip("needs node and `npm ci --prefix tests/node`")
    server = await start_server(ServerOptions(compression=mode))
    with trio.fail_after(60):
        done = await trio.run_process(
            [NODE, str(NODE_DIR / "deflate.mjs"), url_of(server), "200"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    agreed = "permessage-deflate"  # ws's name for what it accepted
    assert json.loads(done.stdout) == {
        "sender": agreed,
        "joiner": agreed,
        "senderOk": True,
        "joinerOk": True,
    }
