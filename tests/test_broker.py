"""One contract for every broker (:mod:`trio_ws_demo.broker`), run against both:
:class:`~trio_ws_demo.broker.LocalBroker` (one process) and
:class:`~trio_ws_demo.backplane.RedisBackplane` on a real redis-server the
test starts (skipped without one, a failure under CI), as centrifuge runs its
broker tests against the memory and the Redis broker.

What every broker promises: a message sent (by a client, by the application
or over the publish API) reaches each of the room's subscribers once, in the
order sent; publish answers with the epoch and offsets, which increase; a
resuming client gets what it missed (from the history, or the broker's
backfill); statistics can be read. And, checked by reading the source: only
the brokers call the room's delivery function.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from trio_ws_demo import Inbox, InboxBudget, SlowClientPolicy
from trio_ws_demo.backplane import RedisBackplane
from trio_ws_demo.broker import Broker, LocalBroker
from trio_ws_demo.frames import frame_message
from trio_ws_demo.rooms import Rooms
from trio_ws_demo.stats import BackplaneStatistics

TIMEOUT = 10.0
HISTORY = 10
PACKAGE = Path(__file__).resolve().parent.parent / "trio_ws_demo"


class Brokered:
    """A broker and the rooms it serves."""

    def __init__(self, kind: str, broker: Broker, rooms: Rooms) -> None:
        self.kind = kind
        self.broker = broker
        self.rooms = rooms


def make_rooms(history: int, brokers: list[Broker]) -> Rooms:
    return Rooms(
        budget=InboxBudget(),
        policy=SlowClientPolicy.CLOSE,
        history=history,
        on_freed=lambda room: brokers[0].forget(room),
    )


@contextlib.asynccontextmanager
async def open_broker(
    kind: str, nursery: trio.Nursery, history: int = HISTORY
) -> AsyncIterator[Brokered]:
    """A LocalBroker, or a RedisBackplane linked to a redis-server of its own."""
    brokers: list[Broker] = []
    rooms = make_rooms(history, brokers)
    if kind == "local":
        brokers.append(LocalBroker(rooms, history=history))
        yield Brokered(kind, brokers[0], rooms)
        return
    from .redis_server import RedisServer

    redis = RedisServer(nursery)
    await redis.start()
    backplane = RedisBackplane(redis.url, rooms, history=history)
    brokers.append(backplane)
    scope = trio.CancelScope()

    async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with scope:
            await backplane.run(task_status=task_status)

    try:
        await nursery.start(run)
        yield Brokered(kind, backplane, rooms)
    finally:
        scope.cancel()
        await redis.kill()


@pytest.fixture(params=["local", "redis"])
async def brokered(
    request: pytest.FixtureRequest, nursery: trio.Nursery
) -> AsyncIterator[Brokered]:
    async with open_broker(request.param, nursery) as made:
        yield made


async def received(inbox: Inbox[bytes], count: int) -> list[str | bytes]:
    """The next *count* messages *inbox* gets (plain frames), in order."""
    with trio.fail_after(TIMEOUT):
        return [frame_message(await inbox.receive()) for _ in range(count)]


async def nothing_more(brokered: Brokered, room: str, inbox: Inbox[bytes]) -> None:
    """No duplicate follows: a marker sent last through the same broker is the
    very next thing *inbox* gets (the broker keeps a room's order, so a message
    delivered twice would have to come before it)."""
    brokered.broker.send_to(room, "<marker>")
    assert await received(inbox, 1) == ["<marker>"]


def texts(frames: list[bytes]) -> list[object]:
    """The messages among a v1 client's frames."""
    fields = [json.loads(frame_message(frame)) for frame in frames]
    return [f.get("text") for f in fields if f["type"] == "message"]


async def test_a_clients_messages_reach_every_subscriber_once_in_order(
    brokered: Brokered,
) -> None:
    broker, rooms = brokered.broker, brokered.rooms
    await broker.follow("r")
    room = rooms.room("r")
    sender, other = Inbox[bytes](), Inbox[bytes]()
    room.join(sender, v1=False)
    room.join(other, v1=False)
    sent = [f"m{n}" for n in range(20)] + [b"\x00\xff"]
    for message in sent:
        broker.send(room, message, None, sender)
    assert await received(other, len(sent)) == sent
    assert await received(sender, len(sent)) == sent  # the sender sees its own, in order
    assert room.last_offset == len(sent)
    await nothing_more(brokered, "r", other)


async def test_the_applications_messages_reach_the_room(brokered: Brokered) -> None:
    broker, rooms = brokered.broker, brokered.rooms
    await broker.follow("r")
    room = rooms.room("r")
    inbox = Inbox[bytes]()
    room.join(inbox, v1=False)
    broker.send_to("r", "first")
    broker.send(room, "second")
    broker.send_to("r", "third")
    assert await received(inbox, 3) == ["first", "second", "third"]
    await nothing_more(brokered, "r", inbox)


async def test_publish_answers_with_an_epoch_and_offsets_that_increase(
    brokered: Brokered,
) -> None:
    broker, rooms = brokered.broker, brokered.rooms
    await broker.follow("p")
    inbox = Inbox[bytes]()
    rooms.room("p").join(inbox, v1=False)
    epoch, offset = await broker.publish("p", ["a", "b"])
    again, later = await broker.publish("p", ["c"])
    assert (again, later) == (epoch, offset + 1)
    assert offset == 2  # offsets count a room's messages from 1
    assert await received(inbox, 3) == ["a", "b", "c"]
    await nothing_more(brokered, "p", inbox)


async def test_publish_to_a_room_with_nobody_here_is_kept(brokered: Brokered) -> None:
    broker, rooms = brokered.broker, brokered.rooms
    epoch, offset = await broker.publish("empty", ["kept"])
    assert offset == 1
    await broker.follow("empty")
    joined = rooms.room("empty").join(Inbox[bytes](), v1=True)
    assert texts(joined.frames) == ["kept"]
    assert rooms.room("empty").epoch == epoch


async def test_a_resuming_client_gets_what_it_missed(brokered: Brokered) -> None:
    broker, rooms = brokered.broker, brokered.rooms
    await broker.follow("r")
    room = rooms.room("r")
    watcher = Inbox[bytes]()
    room.join(watcher, v1=False)
    for n in range(1, 6):
        broker.send_to("r", f"m{n}")
    await received(watcher, 5)
    since = (2, room.epoch)  # it had m1 and m2
    await broker.follow("r")
    missed = await broker.backfill("r", since)
    joined = room.join(Inbox[bytes](), v1=True, since=since, backfill=missed)
    assert joined.recovered is True
    assert texts(joined.frames) == ["m3", "m4", "m5"]


async def test_statistics_can_be_read(brokered: Brokered) -> None:
    broker, rooms = brokered.broker, brokered.rooms
    await broker.follow("r")
    inbox = Inbox[bytes]()
    rooms.room("r").join(inbox, v1=False)
    broker.send_to("r", "counted")
    await received(inbox, 1)
    stats = broker.statistics()
    if brokered.kind == "local":
        assert stats is None  # no link: /metrics shows no backplane
    else:
        assert isinstance(stats, BackplaneStatistics)
        assert stats.up and stats.sent == 1 and stats.received == 1 and stats.queued == 0


async def test_redis_backfills_what_the_history_no_longer_holds(nursery: trio.Nursery) -> None:
    """Beyond the contract: the stream reaches further back than memory."""
    async with open_broker("redis", nursery, history=2) as brokered:
        broker, rooms = brokered.broker, brokered.rooms
        await broker.follow("r")
        room = rooms.room("r")
        watcher = Inbox[bytes]()
        room.join(watcher, v1=False)
        for n in range(1, 6):
            broker.send_to("r", f"m{n}")
        await received(watcher, 5)
        since = (1, room.epoch)
        missed = await broker.backfill("r", since)
        assert missed is not None
        # To the stream's end: it meets the history however far that moved meanwhile.
        assert [(kept.offset, kept.message) for kept in missed] == [
            (n, f"m{n}") for n in range(2, 6)
        ]
        joined = room.join(Inbox[bytes](), v1=True, since=since, backfill=missed)
        assert joined.recovered is True
        assert texts(joined.frames) == ["m2", "m3", "m4", "m5"]


def test_the_local_broker_cannot_backfill_past_the_history() -> None:
    brokers: list[Broker] = []
    rooms = make_rooms(2, brokers)
    broker = LocalBroker(rooms, history=2)
    brokers.append(broker)
    for n in range(1, 6):
        broker.send_to("r", f"m{n}")
    room = rooms.room("r")
    assert trio.run(broker.backfill, "r", (1, room.epoch)) is None
    joined = room.join(Inbox[bytes](), v1=True, since=(1, room.epoch))
    assert joined.recovered is False
    assert texts(joined.frames) == ["m4", "m5"]


_DELIVERS = re.compile(r"\.deliver\(")


def callers_of_deliver() -> list[str]:
    return sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if _DELIVERS.search(path.read_text(encoding="utf-8"))
    )


def test_only_the_brokers_deliver_to_a_room() -> None:
    """``Room.deliver`` hands a message to this process's clients now, skipping
    Redis: any caller but a broker would split the cluster."""
    outside = [
        path
        for path in callers_of_deliver()
        if path != "broker.py" and not path.startswith("backplane/")
    ]
    assert outside == [], f"only broker.py and backplane/ may call Room.deliver(): {outside}"
    assert "broker.py" in callers_of_deliver()  # the test still finds the calls
