"""The hub on its own: no sockets, only channels and counters."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_ws_demo.hub import Hub, InboxBudget, SlowClientPolicy


async def drain(subscription, count: int) -> list[str]:
    items: list[str] = []
    while len(items) < count:
        items.extend(await subscription.receive_batch())
        subscription.batch_done()
    return items


async def test_publish_reaches_every_subscriber_in_order() -> None:
    hub: Hub[str] = Hub()
    subscribers = [hub.subscribe() for _ in range(3)]
    for i in range(10):
        assert hub.publish(f"m{i}", 2) == 3
    for subscription in subscribers:
        assert await drain(subscription, 10) == [f"m{i}" for i in range(10)]
    stats = hub.statistics()
    assert (stats.published, stats.delivered, stats.queued_messages) == (10, 30, 0)


async def test_receive_batch_takes_everything_queued_at_once() -> None:
    hub: Hub[str] = Hub()
    subscription = hub.subscribe()
    for i in range(5):
        hub.publish(str(i), 1)
    assert await subscription.receive_batch() == ["0", "1", "2", "3", "4"]
    assert subscription.queued_bytes == 5  # until the consumer is done with them
    subscription.batch_done()
    assert subscription.queued_bytes == 0
    assert subscription.delivered == 5


async def test_receive_batch_waits_for_the_first_item() -> None:
    hub: Hub[str] = Hub()
    subscription = hub.subscribe()
    got: list[list[str]] = []

    async def reader() -> None:
        got.append(await subscription.receive_batch())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        hub.publish("late", 4)
    assert got == [["late"]]


async def test_slow_subscriber_is_closed_and_others_keep_receiving() -> None:
    hub: Hub[str] = Hub(budget=InboxBudget(max_messages=2, max_bytes=1000))
    slow_calls: list[str] = []
    slow = hub.subscribe(on_slow=lambda: slow_calls.append("slow"))
    healthy = hub.subscribe()
    for i in range(3):
        hub.publish(f"m{i}", 1)
        assert await healthy.receive_batch() == [f"m{i}"]
    assert slow_calls == ["slow"]
    assert slow.closed_as_slow and not slow.is_open
    assert len(hub) == 1
    # What was queued before the overflow is still readable, then the inbox ends.
    assert await slow.receive_batch() == ["m0", "m1"]
    with pytest.raises(trio.EndOfChannel):
        await slow.receive_batch()
    hub.publish("after", 1)
    assert await healthy.receive_batch() == ["after"]
    assert hub.statistics().slow_closed == 1


async def test_byte_budget_catches_large_messages() -> None:
    hub: Hub[bytes] = Hub(budget=InboxBudget(max_messages=1000, max_bytes=100))
    slow = hub.subscribe()
    hub.publish(b"x" * 60, 60)
    assert slow.is_open
    hub.publish(b"y" * 60, 60)
    assert slow.closed_as_slow
    assert slow.queued_bytes == 60


async def test_an_empty_inbox_takes_one_message_larger_than_its_byte_budget() -> None:
    hub: Hub[bytes] = Hub(budget=InboxBudget(max_messages=10, max_bytes=100))
    subscription = hub.subscribe()
    assert hub.publish(b"z" * 500, 500) == 1
    assert await subscription.receive_batch() == [b"z" * 500]


async def test_drop_policy_drops_for_the_slow_subscriber_only() -> None:
    hub: Hub[str] = Hub(
        budget=InboxBudget(max_messages=2, max_bytes=1000), policy=SlowClientPolicy.DROP
    )
    slow = hub.subscribe()
    healthy = hub.subscribe()
    for i in range(5):
        hub.publish(f"m{i}", 1)
        await healthy.receive_batch()
    assert slow.is_open and not slow.closed_as_slow
    assert slow.dropped == 3
    assert await slow.receive_batch() == ["m0", "m1"]
    # Room again: delivery resumes.
    hub.publish("m5", 1)
    assert await slow.receive_batch() == ["m5"]
    assert hub.statistics().dropped == 3


async def test_close_stops_delivery_and_ends_the_inbox() -> None:
    hub: Hub[str] = Hub()
    subscription = hub.subscribe()
    hub.publish("before", 1)
    subscription.close()
    assert hub.publish("after", 1) == 0
    assert await subscription.receive_batch() == ["before"]
    with pytest.raises(trio.EndOfChannel):
        await subscription.receive_batch()


async def test_discard_queued_frees_memory() -> None:
    hub: Hub[str] = Hub()
    subscription = hub.subscribe()
    for i in range(10):
        hub.publish(str(i), 100)
    assert hub.statistics().queued_bytes == 1000
    subscription.discard_queued()
    assert subscription.queued_bytes == 0
    assert hub.statistics().queued_bytes == 0


async def test_default_budget_rides_out_a_burst() -> None:
    """2,000 messages of 1 KiB published at once to 20 clients: nobody is cut off."""
    hub: Hub[bytes] = Hub()
    subscribers = [hub.subscribe() for _ in range(20)]
    payload = b"x" * 1024
    for _ in range(2000):
        hub.publish(payload, len(payload))
    assert all(s.is_open for s in subscribers)
    assert hub.statistics().slow_closed == 0
    for subscription in subscribers:
        assert len(await drain(subscription, 2000)) == 2000


def test_budget_must_be_positive() -> None:
    with pytest.raises(ValueError):
        InboxBudget(max_messages=0)
