"""The hub on its own: no sockets, only socket-free inboxes and counters."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_ws_demo.hub import Hub, Inbox, InboxBudget, SlowClientPolicy


async def drain(inbox: Inbox[str] | Inbox[bytes], count: int) -> list[object]:
    return [await inbox.receive() for _ in range(count)]


def subscribed(hub: Hub[str], budget: InboxBudget | None = None) -> Inbox[str]:
    inbox: Inbox[str] = Inbox(budget or hub.budget)
    hub.subscribe(inbox)
    return inbox


async def test_publish_reaches_every_subscriber_in_order() -> None:
    hub: Hub[str] = Hub()
    inboxes = [subscribed(hub) for _ in range(3)]
    for i in range(10):
        assert hub.publish(f"m{i}", 2) == 3
    for inbox in inboxes:
        assert await drain(inbox, 10) == [f"m{i}" for i in range(10)]
    stats = hub.statistics()
    assert (stats.published, stats.queued_messages, stats.queued_bytes) == (10, 0, 0)


async def test_publish_never_waits_and_receive_waits_for_the_first_item() -> None:
    hub: Hub[str] = Hub()
    inbox = subscribed(hub)
    got: list[str] = []

    async def reader() -> None:
        got.append(await inbox.receive())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        hub.publish("late", 4)
    assert got == ["late"]


async def test_slow_subscriber_is_closed_and_others_keep_receiving() -> None:
    hub: Hub[str] = Hub(budget=InboxBudget(max_messages=2, max_bytes=1000))
    slow = subscribed(hub)
    healthy = subscribed(hub)
    for i in range(3):
        hub.publish(f"m{i}", 1)
        assert await healthy.receive() == f"m{i}"
    assert slow.closed
    assert len(hub) == 1
    # What was queued before the overflow is still readable, then the inbox ends.
    assert await drain(slow, 2) == ["m0", "m1"]
    with pytest.raises(trio.EndOfChannel):
        await slow.receive()
    hub.publish("after", 1)
    assert await healthy.receive() == "after"
    assert hub.statistics().slow_closed == 1


async def test_byte_budget_catches_large_messages() -> None:
    hub: Hub[str] = Hub(budget=InboxBudget(max_messages=1000, max_bytes=100))
    slow = subscribed(hub)
    hub.publish("x" * 60, 60)
    assert not slow.closed
    hub.publish("y" * 60, 60)
    assert slow.closed
    assert slow.queued_bytes == 60


async def test_an_empty_inbox_takes_one_message_larger_than_its_byte_budget() -> None:
    hub: Hub[str] = Hub(budget=InboxBudget(max_messages=10, max_bytes=100))
    inbox = subscribed(hub)
    assert hub.publish("z" * 500, 500) == 1
    assert await inbox.receive() == "z" * 500


async def test_drop_policy_drops_for_the_slow_subscriber_only() -> None:
    hub: Hub[str] = Hub(
        budget=InboxBudget(max_messages=2, max_bytes=1000), policy=SlowClientPolicy.DROP
    )
    slow = subscribed(hub)
    healthy = subscribed(hub)
    for i in range(5):
        hub.publish(f"m{i}", 1)
        await healthy.receive()
    assert not slow.closed and len(hub) == 2
    assert await drain(slow, 2) == ["m0", "m1"]
    # Room again: delivery resumes.
    hub.publish("m5", 1)
    assert await slow.receive() == "m5"
    assert hub.statistics().dropped == 3


async def test_unsubscribe_stops_delivery() -> None:
    hub: Hub[str] = Hub()
    inbox = subscribed(hub)
    hub.publish("before", 1)
    hub.unsubscribe(inbox)
    hub.unsubscribe(inbox)  # idempotent
    assert hub.publish("after", 1) == 0
    assert await inbox.receive() == "before"
    assert inbox.queued_messages == 0


async def test_offer_to_one_subscriber_applies_the_same_policy() -> None:
    """Echo mode offers to the sender alone; a full inbox is still a slow consumer."""
    hub: Hub[str] = Hub(budget=InboxBudget(max_messages=1, max_bytes=1000))
    inbox = subscribed(hub)
    other = subscribed(hub)
    assert hub.offer(inbox, "a", 1)
    assert not hub.offer(inbox, "b", 1)
    assert inbox.closed and len(hub) == 1
    assert other.queued_messages == 0


async def test_statistics_report_queued_depth() -> None:
    hub: Hub[str] = Hub()
    inbox = subscribed(hub)
    subscribed(hub)
    for i in range(10):
        hub.publish(str(i), 100)
    stats = hub.statistics()
    assert (stats.queued_messages, stats.queued_bytes, stats.max_inbox) == (20, 2000, 10)
    await drain(inbox, 10)
    assert hub.statistics().queued_bytes == 1000


async def test_default_budget_rides_out_a_burst() -> None:
    """2,000 messages of 1 KiB published at once to 20 clients: nobody is cut off."""
    hub: Hub[str] = Hub()
    inboxes = [subscribed(hub) for _ in range(20)]
    payload = "x" * 1024
    for _ in range(2000):
        hub.publish(payload, len(payload))
    assert not any(inbox.closed for inbox in inboxes)
    assert hub.statistics().slow_closed == 0
    for inbox in inboxes:
        assert len(await drain(inbox, 2000)) == 2000


def test_budget_must_be_positive() -> None:
    with pytest.raises(ValueError):
        InboxBudget(max_messages=0)
