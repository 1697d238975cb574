"""Rooms, history, the trio-ws-demo.v1 envelopes and resume.

The pure part (`Rooms`, no sockets) first, then real servers on loopback.
"""

from __future__ import annotations

import base64
import json
import tracemalloc

import pytest
import trio
import trio.testing
from websockets.exceptions import InvalidStatus
from websockets.trio.client import ClientConnection, connect

from trio_ws_demo import (
    AccessPolicy,
    BroadcastServer,
    Inbox,
    InboxBudget,
    ServerOptions,
    SlowClientPolicy,
)
from trio_ws_demo.frames import encode_frame
from trio_ws_demo.rooms import ENTRY_OVERHEAD, SUBPROTOCOL, Kept, Rooms, room_from_path

from .conftest import StartServer, url_of
from .wsraw import http_exchange

TIMEOUT = 10


# -- pure ------------------------------------------------------------------------


def make_rooms(history: int = 0, history_bytes: int = 10**6, max_rooms: int = 100) -> Rooms:
    return Rooms(
        budget=InboxBudget(),
        policy=SlowClientPolicy.CLOSE,
        max_rooms=max_rooms,
        history=history,
        history_bytes=history_bytes,
    )


def envelopes(frames: list[bytes]) -> list[dict[str, object]]:
    """Decode our own unmasked text frames (short or 16-bit lengths)."""
    out = []
    for frame in frames:
        length = frame[1]
        start = 2 if length < 126 else 4
        out.append(json.loads(frame[start:]))
    return out


@pytest.mark.parametrize(
    ("path", "room"),
    [
        ("/", ""),
        ("/ops", "ops"),
        ("/ops/alerts", "ops/alerts"),
        ("/a.b-c_d~e", "a.b-c_d~e"),
        ("/ops/", "ops"),  # a trailing / names the same room
        ("/ops/alerts/", "ops/alerts"),
        ("/caf%C3%A9", "café"),  # as a client sends it: percent-encoded UTF-8
        ("/cafe%CC%81", "café"),  # e and a combining accent: NFC, the same room
        ("/café", "café"),
        ("/%E6%97%A5%E6%9C%AC/%E9%83%A8%E5%B1%8B2", "日本/部屋2"),
        ("/%41", "A"),
    ],
)
def test_a_path_names_a_room(path: str, room: str) -> None:
    assert room_from_path(path) == room


@pytest.mark.parametrize(
    "path",
    [
        *["/healthz", "/metrics", "/rooms", "//", "/a//b", "/./a", "/a/..", "/a%20b"],
        *["/%ff", "/a/%2F", "/%2E%2E", "/healthz/", "/%68ealthz", "/a%00", "/a%E2%82%AC"],
    ],  # not UTF-8, a / or .. in disguise, a reserved path in disguise, no letter
)
def test_reserved_and_malformed_paths_are_not_rooms(path: str) -> None:
    with pytest.raises(ValueError):
        room_from_path(path)


def test_a_room_name_has_at_most_max_bytes() -> None:
    assert room_from_path("/" + "a" * 128) == "a" * 128
    with pytest.raises(ValueError, match="at most 128 bytes"):
        room_from_path("/" + "a" * 129)
    assert room_from_path("/" + "é" * 64) == "é" * 64  # bytes, as UTF-8
    with pytest.raises(ValueError, match="at most 128 bytes"):
        room_from_path("/" + "%C3%A9" * 65)


def test_history_is_bounded_by_count_and_bytes() -> None:
    rooms = make_rooms(history=3, history_bytes=10**6)
    room = rooms.room("r")
    for n in range(5):
        room.deliver(f"m{n}")
    joined = room.join(Inbox(), v1=False)
    assert joined.frames == [encode_frame(f"m{n}") for n in (2, 3, 4)]
    # 104-byte frames, each entry counted with its overhead: two fit, not three.
    limit = 2 * (104 + ENTRY_OVERHEAD) + 50
    small = make_rooms(history=100, history_bytes=limit).room("r")
    for n in range(10):
        small.deliver("x" * 100 + str(n))
    assert small.history_messages == 2 and small.history_bytes <= limit


def test_history_holds_what_it_counts() -> None:
    """One copy per message (finding S8): what history keeps, measured with
    tracemalloc, is within 10% of the history_bytes it reports and bounds,
    however the text is spelled (one emoji made Python hold 4 bytes a character)."""
    for text in ("a" * 100_000, "a" * 100_000 + "\N{GRINNING FACE}"):
        room = make_rooms(history=100, history_bytes=10**7).room("r")
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for n in range(20):
            room.deliver(f"{n}{text}")  # as a client's message: nobody else holds it
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        assert room.history_messages == 20
        assert held <= 1.1 * room.history_bytes, (held, room.history_bytes)


def test_a_v1_join_starts_with_the_epoch_then_envelopes() -> None:
    room = make_rooms(history=10).room("chat")
    room.deliver("hello")
    room.deliver(b"\x00\xff")
    joined = envelopes(room.join(Inbox(), v1=True).frames)
    assert joined[0] == {
        "type": "joined",
        "room": "chat",
        "offset": 2,
        "epoch": room.epoch,
        "history": 2,
    }
    assert [(e["offset"], e.get("text"), e.get("base64")) for e in joined[1:]] == [
        (1, "hello", None),
        (2, None, base64.b64encode(b"\x00\xff").decode()),
    ]


def test_a_backfill_the_history_has_moved_past_is_no_recovery() -> None:
    """Issue 27, bug A: the backfill was read (offsets 4..6, up to the history's
    first entry then), the handshake awaited its checks, and meanwhile the
    history was trimmed to 9, 10. Joining with that backfill skipped 7 and 8
    and said ``recovered: true``; now the client is told ``recovered: false``
    and gets the history, and a backfill that does meet it still recovers."""
    room = make_rooms(history=2).room("r")
    for n in range(10):  # offsets 1..10; the history keeps 9, 10
        room.deliver(f"m{n + 1}")
    stale = [Kept(n, 0.0, f"m{n}") for n in (4, 5, 6)]
    joined = room.join(Inbox(), v1=True, since=(3, room.epoch), backfill=stale)
    assert joined.recovered is False
    assert [e.get("offset") for e in envelopes(joined.frames)[1:]] == [9, 10]
    whole = [Kept(n, 0.0, f"m{n}") for n in range(4, 9)]  # 4..8: meets the history at 9
    joined = room.join(Inbox(), v1=True, since=(3, room.epoch), backfill=whole)
    assert joined.recovered is True
    assert [e.get("offset") for e in envelopes(joined.frames)[1:]] == [4, 5, 6, 7, 8, 9, 10]
    holed = [Kept(n, 0.0, f"m{n}") for n in (4, 5, 7, 8)]  # 6 is missing
    joined = room.join(Inbox(), v1=True, since=(3, room.epoch), backfill=holed)
    assert joined.recovered is False


def test_resume_is_complete_only_with_the_same_epoch_and_nothing_evicted() -> None:
    room = make_rooms(history=3).room("r")
    for n in range(5):  # offsets 1..5; history keeps 3, 4, 5
        room.deliver(f"m{n + 1}")
    complete = room.join(Inbox(), v1=True, since=(3, room.epoch))
    assert complete.recovered is True
    assert [e.get("offset") for e in envelopes(complete.frames)[1:]] == [4, 5]
    too_old = room.join(Inbox(), v1=True, since=(1, room.epoch))
    assert too_old.recovered is False
    assert [e.get("offset") for e in envelopes(too_old.frames)[1:]] == [3, 4, 5]
    other_epoch = room.join(Inbox(), v1=True, since=(4, "0123abcd"))
    assert other_epoch.recovered is False
    assert [e.get("offset") for e in envelopes(other_epoch.frames)[1:]] == [3, 4, 5]
    first = envelopes(other_epoch.frames)[0]
    assert first == {
        "type": "resume",
        "room": "r",
        "recovered": False,
        "offset": 5,
        "epoch": room.epoch,
        "keeps": 3,
    }


def test_join_then_publish_has_no_gap_and_no_duplicate() -> None:
    """Joining hands over the history and subscribes in one step."""
    room = make_rooms(history=1000).room("r")
    inbox: Inbox[bytes] = Inbox()
    for n in range(10):
        room.deliver(f"m{n}")
    joined = room.join(inbox, v1=False)
    for n in range(10, 15):
        room.deliver(f"m{n}")
    live = []
    while inbox.queued_messages:
        live.append(inbox._items.popleft()[0])
    assert joined.frames + live == [encode_frame(f"m{n}") for n in range(15)]


def test_a_room_is_freed_when_it_has_no_clients_and_no_history() -> None:
    rooms = make_rooms(history=0)
    inbox: Inbox[bytes] = Inbox()
    room = rooms.room("r")
    epoch = room.epoch
    room.join(inbox, v1=False)
    room.deliver("x")
    rooms.leave(room, inbox)
    assert len(rooms) == 0
    assert rooms.hub_statistics().published == 1  # totals survive the room
    assert rooms.room("r").epoch != epoch  # a new lifetime, a new epoch
    kept = make_rooms(history=5)
    kept.room("r").deliver("kept")
    kept.leave(kept.room("r"), inbox)
    assert len(kept) == 1  # it still has history


def test_without_a_backplane_a_freed_room_is_remembered_at_most_max_rooms_times() -> None:
    rooms = Rooms(
        budget=InboxBudget(), policy=SlowClientPolicy.CLOSE, max_rooms=2, remember_freed=True
    )
    inbox: Inbox[bytes] = Inbox()
    was: dict[str, tuple[str, int]] = {}
    for name in ("a", "b", "c"):  # each is freed as its client leaves
        room = rooms.room(name)
        room.join(inbox, v1=False)
        room.deliver("x")
        was[name] = (room.epoch, room.last_offset)
        rooms.leave(room, inbox)
    assert len(rooms) == 0
    again = {name: rooms.room(name) for name in ("c", "b", "a")}
    assert (again["c"].epoch, again["c"].last_offset) == was["c"]  # goes on counting
    assert (again["b"].epoch, again["b"].last_offset) == was["b"]
    assert (again["a"].epoch, again["a"].last_offset) != was["a"]  # forgotten: LRU of 2
    assert again["a"].last_offset == 0


# -- on loopback -----------------------------------------------------------------


def v1(server: BroadcastServer, path: str = "/") -> connect:
    return connect(url_of(server, path), proxy=None, subprotocols=[SUBPROTOCOL])  # type: ignore[list-item]


async def recv_json(ws: ClientConnection) -> dict[str, object]:
    """The next v1 frame that is not about presence (those come and go as
    clients do: tests/test_presence.py has them)."""
    while True:
        message = await ws.recv()
        assert isinstance(message, str)
        frame = json.loads(message)
        if frame["type"] != "presence":
            return frame  # type: ignore[no-any-return]


async def test_rooms_are_isolated(server: BroadcastServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            connect(url_of(server, "/a"), proxy=None) as a1,
            connect(url_of(server, "/a"), proxy=None) as a2,
            connect(url_of(server, "/b"), proxy=None) as b,
            connect(url_of(server), proxy=None) as lobby,
        ):
            await a1.send("for a")
            assert await a2.recv() == "for a"
            assert await a1.recv() == "for a"
            await b.send("for b")
            assert await b.recv() == "for b"
            await lobby.send("for the default room")
            assert await lobby.recv() == "for the default room"
            # Had anything crossed rooms, it would arrive before these.
            await a2.send("a again")
            assert await a1.recv() == "a again"
            assert await a2.recv() == "a again"
            await b.send("b again")
            assert await b.recv() == "b again"
            assert server.statistics().rooms == 3


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/a//b", b"segments"),
        ("/healthz", b"reserved"),
        ("/" + "x" * 129, b"at most 128 bytes"),
    ],
)
async def test_an_invalid_room_gets_400_with_the_reason(
    server: BroadcastServer, path: str, reason: bytes
) -> None:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    ).encode()
    with trio.fail_after(TIMEOUT):
        answer = await http_exchange(server.port, request)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert reason in answer


async def test_max_room_name_is_a_flag(start_server: StartServer) -> None:
    server = await start_server(ServerOptions(max_room_name=4))
    with trio.fail_after(TIMEOUT):
        async with connect(url_of(server, "/abcd"), proxy=None):
            pass
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url_of(server, "/abcde"), proxy=None):
                pass
    assert refused.value.response.status_code == 400


async def test_one_room_too_many_gets_503_and_existing_rooms_still_open(
    start_server: StartServer,
) -> None:
    server = await start_server(ServerOptions(max_rooms=2))
    with trio.fail_after(TIMEOUT):
        async with (
            connect(url_of(server, "/one"), proxy=None),
            connect(url_of(server, "/two"), proxy=None),
        ):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url_of(server, "/three"), proxy=None):
                    pass
            assert refused.value.response.status_code == 503
            async with connect(url_of(server, "/one"), proxy=None) as again:
                await again.send("still fine")
                assert await again.recv() == "still fine"
        assert server.statistics().rejections["too many rooms"] == 1
        # Empty rooms with no history are freed: room for new ones again.
        await trio.testing.wait_all_tasks_blocked()
        assert server.statistics().rooms == 0
        async with connect(url_of(server, "/three"), proxy=None):
            pass


async def test_a_late_joiner_gets_the_history_then_live_messages(
    start_server: StartServer,
) -> None:
    server = await start_server(ServerOptions(history=3))
    with trio.fail_after(TIMEOUT):
        async with connect(url_of(server, "/news"), proxy=None) as early:
            for n in range(5):
                await early.send(f"m{n}")
                assert await early.recv() == f"m{n}"
            async with connect(url_of(server, "/news"), proxy=None) as late:
                assert [await late.recv() for _ in range(3)] == ["m2", "m3", "m4"]
                await early.send("live")
                assert await late.recv() == "live"


async def test_history_bytes_is_a_flag(start_server: StartServer) -> None:
    limit = 2 * (103 + ENTRY_OVERHEAD) + 50  # two 103-byte frames fit, not three
    server = await start_server(ServerOptions(history=100, history_bytes=limit))
    with trio.fail_after(TIMEOUT):
        async with connect(url_of(server, "/r"), proxy=None) as ws:
            for n in range(10):
                await ws.send(f"{n}" + "x" * 100)
                await ws.recv()
        stats = server.statistics()
        assert stats.history_messages == 2 and stats.history_bytes <= limit
        async with connect(url_of(server, "/r"), proxy=None) as late:
            assert [await late.recv() for _ in range(2)] == ["8" + "x" * 100, "9" + "x" * 100]


async def test_joining_while_others_publish_has_no_gap_and_no_duplicate(
    start_server: StartServer,
) -> None:
    """A publisher runs flat out while clients join: each sees offsets 1, 2, 3, ... exactly."""
    server = await start_server(ServerOptions(history=100_000))
    total = 600
    with trio.fail_after(30):
        async with connect(url_of(server, "/busy"), proxy=None) as publisher:
            seen: list[list[int]] = []

            async def join_and_read(task_status: trio.TaskStatus[None]) -> None:
                async with v1(server, "/busy") as ws:
                    task_status.started()
                    joined = await recv_json(ws)
                    offsets = []
                    while not offsets or offsets[-1] < total:
                        offsets.append(int((await recv_json(ws))["offset"]))  # type: ignore[call-overload]
                    seen.append(offsets)
                    assert joined["type"] == "joined"

            async with trio.open_nursery() as nursery:
                for n in range(total):
                    await publisher.send(f"m{n}")
                    if n in (50, 200, 201, 450):  # joins in the middle of the stream
                        await nursery.start(join_and_read)
                for _ in range(total):
                    await publisher.recv()
    assert len(seen) == 4
    for offsets in seen:
        assert offsets == list(range(1, total + 1))


async def test_resume_after_a_reconnect(start_server: StartServer) -> None:
    server = await start_server(ServerOptions(history=5))
    with trio.fail_after(TIMEOUT):
        async with v1(server, "/r") as reader:
            joined = await recv_json(reader)
            epoch = joined["epoch"]
            await reader.send("one")
            got = await recv_json(reader)
            assert (got["offset"], got["text"], got["room"]) == (1, "one", "r")
            assert isinstance(got["time"], float)
        async with connect(url_of(server, "/r"), proxy=None) as other:  # while the reader is away
            assert await other.recv() == "one"  # the history
            for word in ("two", "three"):
                await other.send(word)
                assert await other.recv() == word
            async with v1(server, f"/r?since=1&epoch={epoch}") as back:
                resume = await recv_json(back)
                assert resume == {
                    "type": "resume",
                    "room": "r",
                    "recovered": True,
                    "offset": 3,
                    "epoch": epoch,
                    "keeps": 5,
                }
                assert [(await recv_json(back))["text"] for _ in range(2)] == ["two", "three"]
                await other.send("four")
                assert (await recv_json(back))["offset"] == 4
            for word in ("5", "6", "7", "8", "9"):  # history keeps 5..9: offset 1 is gone
                await other.send(word)
                await other.recv()
            async with v1(server, f"/r?since=1&epoch={epoch}") as late:
                resume = await recv_json(late)
                assert resume["recovered"] is False
            async with v1(server, "/r?since=8&epoch=00000000") as elsewhere:
                assert (await recv_json(elsewhere))["recovered"] is False


async def test_a_plain_client_gets_plain_frames_and_the_article_client_sees_its_echo(
    start_server: StartServer,
) -> None:
    server = await start_server(ServerOptions(history=10))
    with trio.fail_after(TIMEOUT):
        async with v1(server) as json_client, connect(url_of(server), proxy=None) as plain:
            await recv_json(json_client)  # joined
            await plain.send("Hello, WebSocket!")
            assert await plain.recv() == "Hello, WebSocket!"
            assert (await recv_json(json_client))["text"] == "Hello, WebSocket!"
            assert plain.subprotocol is None and json_client.subprotocol == SUBPROTOCOL


async def test_a_bad_resume_query_gets_400(server: BroadcastServer) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(InvalidStatus) as refused:
        async with v1(server, "/r?since=yesterday&epoch=x"):
            pass
    assert refused.value.response.status_code == 400


async def test_presence_lists_rooms_and_respects_the_token(start_server: StartServer) -> None:
    server = await start_server(ServerOptions(history=2, access=AccessPolicy(token="s3cret")))
    with trio.fail_after(TIMEOUT):
        async with connect(url_of(server, "/ops/alerts?token=s3cret"), proxy=None) as ws:
            await ws.send("disk full")
            await ws.recv()
            refused = await http_exchange(server.port, b"GET /rooms HTTP/1.1\r\nHost: x\r\n\r\n")
            assert refused.startswith(b"HTTP/1.1 401 ")
            answer = await http_exchange(
                server.port,
                b"GET /rooms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n\r\n",
            )
            assert answer.startswith(b"HTTP/1.1 200 ")
            rooms = json.loads(answer.split(b"\r\n\r\n", 1)[1])["rooms"]
            assert [(r["room"], r["clients"], r["history"]) for r in rooms] == [
                ("ops/alerts", 1, 1)
            ]
            # /metrics is behind the token too (finding S12).
            metrics = await http_exchange(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert metrics.startswith(b"HTTP/1.1 401 ")
            metrics = await http_exchange(
                server.port,
                b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n\r\n",
            )
            assert b"trio_ws_demo_rooms 1.0" in metrics
            assert b"trio_ws_demo_history_messages 1.0" in metrics


async def test_the_application_can_broadcast_to_one_room(server: BroadcastServer) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            connect(url_of(server, "/x"), proxy=None) as x,
            connect(url_of(server, "/y"), proxy=None) as y,
        ):
            await trio.testing.wait_all_tasks_blocked()
            assert server.broadcast("only x", room="x") == 1
            assert await x.recv() == "only x"
            await y.send("y's own")
            assert await y.recv() == "y's own"


def test_a_room_made_ready_for_a_client_that_never_joined_is_pruned() -> None:
    """The backplane prepares a room before its first client joins; if that
    client never does (it hung up, the server shut down), the room goes."""
    registry = make_rooms()
    registry.room("ready")
    registry.prune("ready")
    assert registry.get("ready") is None
    joined = registry.room("busy")
    joined.join(Inbox(), v1=False)
    registry.prune("busy")
    assert registry.get("busy") is joined
    registry.prune("never-made")  # nothing to do


def test_rooms_without_clients_expire_after_their_ttl() -> None:
    now = [0.0]
    rooms = Rooms(
        budget=InboxBudget(), policy=SlowClientPolicy.CLOSE, history=10, room_ttl=60,
        clock=lambda: now[0],
    )  # fmt: skip
    kept = rooms.room("kept")
    kept.deliver("history")
    inbox = Inbox()
    busy = rooms.room("busy")
    busy.join(inbox, v1=False)
    busy.deliver("history")
    now[0] = 59
    assert rooms.expire() == 0
    now[0] = 60
    assert rooms.expire() == 1  # "kept": idle for 60 s; "busy" has a client
    assert rooms.get("kept") is None and rooms.get("busy") is busy
    rooms.leave(busy, inbox)  # idle from now on, its history kept a while more
    now[0] = 119
    assert rooms.expire() == 0 and rooms.get("busy") is busy
    now[0] = 120
    assert rooms.expire() == 1 and len(rooms) == 0


def test_at_max_rooms_the_least_recently_used_empty_room_gives_way() -> None:
    now = [0.0]
    rooms = Rooms(
        budget=InboxBudget(), policy=SlowClientPolicy.CLOSE, max_rooms=3, history=10,
        room_ttl=None, clock=lambda: now[0],
    )  # fmt: skip
    inbox = Inbox()
    for n, name in enumerate(["old", "newer", "occupied"]):
        now[0] = n
        rooms.room(name).deliver("kept")
    rooms.room("occupied").join(inbox, v1=False)
    assert rooms.has_room_for("fresh")  # "old" gives way
    assert [room.name for room in rooms.rooms()] == ["newer", "occupied"]
    rooms.room("fresh").join(Inbox(), v1=False)
    assert rooms.has_room_for("another")  # "newer" now
    rooms.room("another").join(Inbox(), v1=False)
    assert not rooms.has_room_for("one too many")  # all three have clients: 503


async def test_the_server_frees_an_idle_room_after_room_ttl(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = BroadcastServer(ServerOptions(history=5, room_ttl=100))
    with trio.fail_after(10_000):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run, "127.0.0.1", 0)
            server.broadcast("kept a while", room="quiet")
            assert server.rooms.get("quiet") is not None
            await trio.sleep(99)  # virtual time
            assert server.rooms.get("quiet") is not None
            await trio.sleep(26)  # 100 s, and a sweep (every 25 s) since
            assert server.rooms.get("quiet") is None
            assert server.statistics().history_messages == 0
            nursery.cancel_scope.cancel()


async def test_s7_room_slots_never_fill_up_for_good() -> None:
    """The probe's S7: one client fills --max-rooms with one message per room and
    leaves; a new room then gets 101 (the least recently used empty room gives way),
    not 503 until a restart."""
    from websockets.trio.client import connect

    from .processes import run_cli

    with trio.fail_after(TIMEOUT):
        async with run_cli(
            "serve", "--port", "0", "--history", "1", "--max-rooms", "3", "--log-level", "warning"
        ) as serve:
            base = (await serve.readline()).split()[2]
            for name in ("a", "b", "c"):
                async with connect(f"{base}/{name}", proxy=None) as ws:
                    await ws.send(f"in {name}")
                    await ws.recv()
            async with connect(f"{base}/d", proxy=None) as ws:  # was: 503 for good
                await ws.send("in d")
                assert await ws.recv() == "in d"
            async with connect(f"{base}/b", subprotocols=[SUBPROTOCOL], proxy=None) as ws:  # type: ignore[list-item]
                joined = json.loads(await ws.recv())
                assert joined["history"] == 1  # "a", the oldest, gave way; "b" kept its own


async def post(server: BroadcastServer, path: str, body: bytes) -> dict[str, object]:
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    head, _, answer = (await http_exchange(server.port, request)).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    return json.loads(answer)  # type: ignore[no-any-return]


async def test_a_resume_into_a_room_freed_meanwhile_is_recovered_when_nothing_was_lost(
    start_server: StartServer,
) -> None:
    """The ux audit's finding 23: a lone client's link drops, so its room (no
    history yet) is freed; a POST makes it again. Its resume got recovered:
    false (a new epoch) although the one message it missed was replayed."""
    server = await start_server(ServerOptions(history=10))
    with trio.fail_after(TIMEOUT):
        async with v1(server, "/jr") as ws:
            joined = await recv_json(ws)
        # The server left the room before it answered the close: it is freed now.
        posted = await post(server, "/jr", b"while you were away")
        since = f"/jr?since={joined['offset']}&epoch={joined['epoch']}"
        async with v1(server, since) as ws:
            resume, missed = await recv_json(ws), await recv_json(ws)
    assert posted == {"room": "jr", "epoch": joined["epoch"], "offset": 1}
    assert (resume["type"], resume["recovered"], resume["epoch"], resume["offset"]) == (
        "resume", True, joined["epoch"], 1,
    )  # fmt: skip
    assert (missed["offset"], missed["text"]) == (1, "while you were away")


async def test_a_resume_into_a_room_remade_says_exactly_whether_something_was_lost(
    start_server: StartServer,
) -> None:
    """Without history a freed room keeps nothing but its epoch and last offset:
    a resume from that offset is recovered with nothing missed; one from
    before a message published while nobody was there is not."""
    server = await start_server(ServerOptions(history=0))
    with trio.fail_after(TIMEOUT):
        async with v1(server, "/q") as ws:
            epoch = (await recv_json(ws))["epoch"]
            await post(server, "/q", b"one")
            assert (await recv_json(ws))["offset"] == 1
        async with v1(server, f"/q?since=1&epoch={epoch}") as ws:
            nothing_missed = await recv_json(ws)
            await post(server, "/q", b"two")
            live = await recv_json(ws)  # the next frame: nothing was replayed before it
        unseen = await post(server, "/q", b"three")  # nobody there, nothing kept
        async with v1(server, f"/q?since=2&epoch={epoch}") as ws:
            lost = await recv_json(ws)
    assert (nothing_missed["recovered"], nothing_missed["epoch"]) == (True, epoch)
    assert (live["offset"], live["text"]) == (2, "two")
    assert unseen["epoch"] == epoch and unseen["offset"] == 3
    assert (lost["type"], lost["recovered"], lost["epoch"], lost["offset"]) == (
        "resume", False, epoch, 3,
    )  # fmt: skip
