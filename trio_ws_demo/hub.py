"""The broadcast hub: one publisher call, a bounded inbox per subscriber.

The hub knows nothing about sockets or WebSockets. It moves opaque items, each
with a size in bytes, from :meth:`Hub.publish` into every subscriber's inbox
(a bounded :func:`trio.open_memory_channel`). Publishing is a plain ``def``:
it never waits for a subscriber, so one stuck reader cannot stall the others.

Each inbox has a *budget* in messages and in bytes. An item that would take a
subscriber past either limit makes it a *slow consumer*, handled by the hub's
:class:`SlowClientPolicy`:

``CLOSE`` (the default)
    the subscription is ended at once: its inbox stops taking items, what is
    already queued stays readable, and its ``on_slow`` callback runs so that
    the owner can close the connection (the server uses code 1008).
``DROP``
    the item is dropped for that subscriber only and counted; later items are
    delivered as soon as there is room again.

Memory per subscriber is therefore bounded by its budget, whatever the peer does.

A subscriber may also take items *at once*: with ``deliver_now``, an item
offered while nothing is outstanding for it (nothing queued, nothing handed to
its consumer and not yet done) goes straight to that callback, which returns
what it could not take (or None). The rest is queued first in line. The server
uses this to write a frame to an idle client's socket without a task switch.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import trio

__all__ = [
    "DEFAULT_MAX_QUEUE_BYTES",
    "DEFAULT_MAX_QUEUE_MESSAGES",
    "Hub",
    "HubStatistics",
    "InboxBudget",
    "SlowClientPolicy",
    "Subscription",
]

T = TypeVar("T")

#: A healthy client that reads as fast as it can must ride out a burst (for
#: example 2,000 messages of 1 KiB published at once) without being cut off,
#: so the budget is generous; it exists to catch clients that are *stuck*.
DEFAULT_MAX_QUEUE_MESSAGES = 4096
DEFAULT_MAX_QUEUE_BYTES = 8 * 1024 * 1024


class SlowClientPolicy(enum.Enum):
    """What the hub does with a subscriber whose inbox is over budget."""

    CLOSE = "close"
    DROP = "drop"


@dataclass(frozen=True)
class InboxBudget:
    """How much may wait in one subscriber's inbox before it counts as slow."""

    max_messages: int = DEFAULT_MAX_QUEUE_MESSAGES
    max_bytes: int = DEFAULT_MAX_QUEUE_BYTES

    def __post_init__(self) -> None:
        if self.max_messages < 1 or self.max_bytes < 1:
            raise ValueError("an inbox budget needs at least one message and one byte")


@dataclass(frozen=True)
class HubStatistics:
    """A snapshot of the hub's counters (see :meth:`Hub.statistics`)."""

    subscribers: int
    published: int
    delivered: int
    delivered_bytes: int
    dropped: int
    slow_closed: int
    queued_messages: int
    queued_bytes: int
    max_inbox: int
    """Messages queued for the most backed-up subscriber."""


class Subscription(Generic[T]):
    """One subscriber's bounded inbox. Created by :meth:`Hub.subscribe`."""

    def __init__(
        self,
        hub: Hub[T],
        budget: InboxBudget,
        on_slow: Callable[[], None] | None,
        deliver_now: Callable[[T], T | None] | None = None,
    ) -> None:
        self._hub = hub
        self._budget = budget
        self._on_slow = on_slow
        self._deliver_now = deliver_now
        # The channel is bounded by the budget's message count; the byte count
        # is kept beside it because a channel only counts items.
        self._send, self._receive = trio.open_memory_channel[tuple[T, int]](budget.max_messages)
        self.queued_bytes = 0
        """Bytes queued or handed to the consumer and not yet done with."""
        # Items queued or handed to the consumer and not yet done with, and the
        # (count, bytes) of the batch the consumer holds.
        self._outstanding = 0
        self._in_hand = (0, 0)
        self.delivered = 0
        self.dropped = 0
        self.closed_as_slow = False
        self._open = True

    @property
    def is_open(self) -> bool:
        """True while the hub still delivers to this subscription."""
        return self._open

    @property
    def queued_messages(self) -> int:
        return self._send.statistics().current_buffer_used

    def offer(self, item: T, size: int) -> bool:
        """Deliver (via ``deliver_now``) or queue *item* without waiting.

        Returns whether it was taken. An item that would exceed the budget is
        handled by the hub's slow-client policy.
        """
        if not self._open:
            return False
        if self._deliver_now is not None and self._outstanding == 0:
            rest = self._deliver_now(item)
            if rest is None:
                self.delivered += 1
                self._hub._delivered += 1
                self._hub._delivered_bytes += size
                return True
            item = rest
        # An empty inbox always takes one item, so a message as large as the
        # whole byte budget still gets through to a client that keeps up.
        over_bytes = self.queued_bytes + size > self._budget.max_bytes and self.queued_bytes > 0
        if not over_bytes:
            try:
                self._send.send_nowait((item, size))
            except trio.WouldBlock:
                pass
            else:
                self.queued_bytes += size
                self._outstanding += 1
                return True
        self._overflow()
        return False

    def _overflow(self) -> None:
        if self._hub.policy is SlowClientPolicy.DROP:
            self.dropped += 1
            self._hub._dropped += 1
            return
        self.closed_as_slow = True
        self._hub._slow_closed += 1
        self.close()
        if self._on_slow is not None:
            self._on_slow()

    def close(self) -> None:
        """Stop delivery. Items already queued stay readable, then the inbox ends."""
        if self._open:
            self._open = False
            self._hub._subscribers.discard(self)
            self._send.close()

    async def receive_batch(self) -> list[T]:
        """Wait for at least one item, then take everything queued.

        Draining in one go lets the owner write many frames with one system
        call. Call :meth:`batch_done` once the batch is written; until then
        new items queue behind it. Raises :class:`trio.EndOfChannel` once the
        subscription is closed and its inbox is empty.
        """
        self.batch_done()
        first = await self._receive.receive()
        batch = [first]
        try:
            while True:
                batch.append(self._receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            pass
        taken = 0
        items = []
        for item, size in batch:
            taken += size
            items.append(item)
        self._in_hand = (len(items), taken)
        return items

    def batch_done(self) -> None:
        """The last batch from :meth:`receive_batch` is delivered: release it."""
        count, size = self._in_hand
        if count:
            self._in_hand = (0, 0)
            self._outstanding -= count
            self.queued_bytes -= size
            self.delivered += count
            self._hub._delivered += count
            self._hub._delivered_bytes += size

    def discard_queued(self) -> None:
        """Free everything still queued (for a subscriber that is going away)."""
        self.close()
        try:
            while True:
                self._receive.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            pass
        self.queued_bytes = 0
        self._outstanding = 0
        self._in_hand = (0, 0)


class Hub(Generic[T]):
    """Fans each published item out to every open subscription."""

    def __init__(
        self,
        *,
        budget: InboxBudget | None = None,
        policy: SlowClientPolicy = SlowClientPolicy.CLOSE,
    ) -> None:
        self.budget = budget or InboxBudget()
        self.policy = policy
        self._subscribers: set[Subscription[T]] = set()
        self._published = 0
        self._delivered = 0
        self._delivered_bytes = 0
        self._dropped = 0
        self._slow_closed = 0

    def subscribe(
        self,
        *,
        on_slow: Callable[[], None] | None = None,
        deliver_now: Callable[[T], T | None] | None = None,
    ) -> Subscription[T]:
        """Open a new inbox.

        *on_slow* runs (synchronously) if it is closed as slow; *deliver_now*
        is the optional fast path described in the module docstring.
        """
        subscription = Subscription(self, self.budget, on_slow, deliver_now)
        self._subscribers.add(subscription)
        return subscription

    def publish(self, item: T, size: int) -> int:
        """Offer *item* to every subscriber without waiting; return how many took it."""
        self._published += 1
        taken = 0
        # Copy: a slow subscriber removes itself from the set while we loop.
        for subscription in list(self._subscribers):
            taken += subscription.offer(item, size)
        return taken

    def __len__(self) -> int:
        return len(self._subscribers)

    def statistics(self) -> HubStatistics:
        subscribers = list(self._subscribers)
        return HubStatistics(
            subscribers=len(subscribers),
            published=self._published,
            delivered=self._delivered,
            delivered_bytes=self._delivered_bytes,
            dropped=self._dropped,
            slow_closed=self._slow_closed,
            queued_messages=sum(s.queued_messages for s in subscribers),
            queued_bytes=sum(s.queued_bytes for s in subscribers),
            max_inbox=max((s.queued_messages for s in subscribers), default=0),
        )
