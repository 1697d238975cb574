"""The backplane's per-room state machine (``feeds.py``) and the room's offset
guard: pure, no Redis."""

from __future__ import annotations

import json

import pytest

from trio_ws_demo import Inbox, InboxBudget, SlowClientPolicy
from trio_ws_demo.backplane.feeds import LOCAL, TRANSITIONS, RoomFeed
from trio_ws_demo.frames import frame_message
from trio_ws_demo.rooms import Kept, Room


def make_room(history: int = 10) -> Room:
    return Room("r", InboxBudget(), SlowClientPolicy.CLOSE, history, 10**6)


async def drain(inbox: Inbox[bytes]) -> list[str | bytes]:
    """What the inbox holds now, decoded."""
    return [frame_message(await inbox.receive()) for _ in range(inbox.queued_messages)]


async def v1_frames(inbox: Inbox[bytes]) -> list[dict[str, object]]:
    return [json.loads(item) for item in await drain(inbox)]


def followed(room: Room, epoch: int = 1700, offset: int = 5) -> RoomFeed:
    feed = RoomFeed(room)
    feed.begin_load()
    feed.loaded(epoch, (epoch, offset), [Kept(offset, 0.0, "last")], continued=False)
    return feed


async def test_every_transition_in_the_table_is_what_the_feed_does() -> None:
    room = make_room()
    watcher: Inbox[bytes] = Inbox()
    room.join(watcher, v1=True)
    await v1_frames(watcher)
    local_epoch = room.epoch
    feed = RoomFeed(room)
    seen = []

    async def step(event: str, action: object) -> list[dict[str, object]]:
        before = feed.state
        assert callable(action)
        action()
        seen.append((before, event, feed.state))
        return await v1_frames(watcher)

    assert await step("load", feed.begin_load) == [] and room.epoch == local_epoch
    assert await step("failed", lambda: feed.failed(0.0, 0.5, 10.0)) == []
    await step("load", feed.begin_load)
    assert await step("link lost", feed.link_lost) == []
    await step("load", feed.begin_load)
    (up,) = await step("loaded", lambda: feed.loaded(1700, (1700, 7), [], continued=True))
    assert (up["type"], up["up"], up["recovered"], up["epoch"], up["offset"]) == (
        "backplane", True, True, "1700", 7,
    )  # fmt: skip
    (restart,) = await step("stream restarted", lambda: feed.restarted(1800))
    assert (restart["up"], restart["recovered"], restart["epoch"], restart["offset"]) == (
        True, False, "1800", 0,
    )  # fmt: skip
    (down,) = await step("link lost", feed.link_lost)
    assert down["up"] is False and down["epoch"] not in ("1700", "1800", local_epoch)
    assert set(seen) == {(row.source, row.event, row.target) for row in TRANSITIONS}


def test_a_transition_not_in_the_table_is_refused() -> None:
    feed = RoomFeed(make_room())
    with pytest.raises(RuntimeError):
        feed.loaded(1, (1, 1), [], continued=False)  # LOCAL cannot become FOLLOWED
    followed_feed = followed(make_room())
    with pytest.raises(RuntimeError):
        followed_feed.begin_load()


def test_failed_loads_back_off() -> None:
    feed = RoomFeed(make_room())
    delays = []
    for _ in range(7):
        feed.begin_load()
        delays.append(feed.failed(100.0, 0.5, 10.0))
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert feed.retry_at == 110.0 and feed.state is LOCAL


async def test_an_offset_at_or_below_the_last_is_dropped_and_counted() -> None:
    room = make_room()
    inbox: Inbox[bytes] = Inbox()
    room.join(inbox, v1=False)
    room.deliver("a", offset=5)
    room.deliver("b", offset=5)
    room.deliver("c", offset=3)
    room.deliver("d", offset=6)
    assert await drain(inbox) == ["a", "d"] and room.stale == 2 and room.last_offset == 6


def test_a_read_from_before_a_reload_is_not_delivered_again() -> None:
    """B15: an XREAD still in flight from an earlier follow returns entries the
    room has loaded since: the feed refuses them."""
    feed = followed(make_room(), epoch=1700, offset=5)
    assert not feed.accepts((1700, 4)) and not feed.accepts((1700, 5))
    assert feed.accepts((1700, 6)) and feed.accepts((1800, 0))
    feed.link_lost()
    assert not feed.accepts((1700, 6))  # only a followed room reads


def test_a_recorded_message_goes_only_to_those_who_lack_it() -> None:
    """Bug B: a message delivered here while Redis had not confirmed it reached
    the clients present then. When Redis's copy is read back it is kept, and
    sent to those who joined since and were not replayed it, and to no one else."""
    room = make_room(history=0)  # a joiner is replayed nothing
    present: Inbox[bytes] = Inbox()
    room.join(present, v1=False)
    room.deliver("delivered while Redis was away")
    mark = room.deliveries
    late: Inbox[bytes] = Inbox()
    room.join(late, v1=False)
    room.record(5, 0.0, "delivered while Redis was away", after=mark)  # its shared offset
    assert present.queued_messages == 1  # the live copy only
    assert late.queued_messages == 1 and room.last_offset == 5


def test_a_recorded_message_is_not_sent_to_a_joiner_replayed_it() -> None:
    room = make_room(history=5)
    room.deliver("delivered while Redis was away")
    mark = room.deliveries
    late: Inbox[bytes] = Inbox()
    replayed = room.join(late, v1=False).frames
    assert [frame_message(f) for f in replayed] == ["delivered while Redis was away"]
    room.record(7, 0.0, "delivered while Redis was away", after=mark)
    assert late.queued_messages == 0 and room.last_offset == 7
    later: Inbox[bytes] = Inbox()
    frames = room.join(later, v1=False).frames
    assert [frame_message(f) for f in frames][-1] == "delivered while Redis was away"


def test_a_resume_from_before_the_history_is_filled_from_the_stream() -> None:
    room = make_room(history=2)
    for offset in range(1, 11):
        room.deliver(f"m{offset}", offset=offset)
    backfill = [Kept(n, 0.0, f"m{n}") for n in range(4, 9)]
    joined = room.join(Inbox(), v1=True, since=(3, room.epoch), backfill=backfill)
    texts = [json.loads(frame_message(f)).get("text") for f in joined.frames[1:]]
    assert joined.recovered is True and texts == [f"m{n}" for n in range(4, 11)]
    short = room.join(Inbox(), v1=True, since=(2, room.epoch), backfill=backfill)
    assert short.recovered is False  # offset 3 is in neither
