"""The broadcast hub: pure fan-out, with a policy for subscribers that fall behind.

The hub knows nothing about sockets, writers or WebSockets. :meth:`Hub.publish`
is a plain ``def``: it *offers* an item to every subscriber and never waits, so
one stuck reader cannot stall the others. Each subscriber decides for itself
whether the item still fits within its :class:`InboxBudget` (the server's
subscriber is a connection's :class:`~trio_ws_demo.server.outbox.Outbox`; the
socket-free :class:`Inbox` here serves library users and tests). An item that
does not fit makes the subscriber a *slow consumer*, handled by the hub's
:class:`SlowClientPolicy`:

``CLOSE`` (the default)
    the subscriber is removed from the hub and told through
    :meth:`Subscriber.closed_as_slow`, so that its owner can close the
    connection (the server uses code 1008).
``DROP``
    the item is dropped for that subscriber only and counted; later items are
    offered again as usual.

Memory per subscriber is therefore bounded by its budget, whatever the peer does.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import trio

__all__ = [
    "DEFAULT_MAX_QUEUE_BYTES",
    "DEFAULT_MAX_QUEUE_MESSAGES",
    "Hub",
    "HubStatistics",
    "Inbox",
    "InboxBudget",
    "SlowClientPolicy",
    "Subscriber",
]

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)

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
    """How much may wait for one subscriber before it counts as slow."""

    max_messages: int = DEFAULT_MAX_QUEUE_MESSAGES
    max_bytes: int = DEFAULT_MAX_QUEUE_BYTES

    def __post_init__(self) -> None:
        if self.max_messages < 1 or self.max_bytes < 1:
            raise ValueError("an inbox budget needs at least one message and one byte")

    def admits(self, messages: int, queued_bytes: int, size: int) -> bool:
        """May one more item of *size* join *messages* items of *queued_bytes*?

        An empty inbox always takes one item, so a message as large as the
        whole byte budget still reaches a client that keeps up.
        """
        if messages == 0:
            return True
        return messages < self.max_messages and queued_bytes + size <= self.max_bytes


class Subscriber(Protocol[T_contra]):
    """What the hub needs of a subscriber. Both methods are plain ``def``\\ s."""

    @property
    def queued_messages(self) -> int: ...

    @property
    def queued_bytes(self) -> int: ...

    def offer(self, item: T_contra, size: int) -> bool:
        """Take *item* (of *size* bytes) if it fits the budget; never wait."""
        ...

    def closed_as_slow(self) -> None:
        """The hub removed this subscriber under :attr:`SlowClientPolicy.CLOSE`."""
        ...


@dataclass(frozen=True)
class HubStatistics:
    """A snapshot of the hub's counters (see :meth:`Hub.statistics`)."""

    subscribers: int
    published: int
    dropped: int
    slow_closed: int
    queued_messages: int
    queued_bytes: int
    max_inbox: int
    """Messages queued for the most backed-up subscriber."""


class Hub(Generic[T]):
    """Fans each published item out to every subscriber."""

    def __init__(
        self,
        *,
        budget: InboxBudget | None = None,
        policy: SlowClientPolicy = SlowClientPolicy.CLOSE,
    ) -> None:
        self.budget = budget or InboxBudget()
        """The budget subscribers are expected to apply (the hub does not count bytes)."""
        self.policy = policy
        self._subscribers: set[Subscriber[T]] = set()
        self._published = 0
        self._dropped = 0
        self._slow_closed = 0

    def subscribe(self, subscriber: Subscriber[T]) -> None:
        self._subscribers.add(subscriber)

    def unsubscribe(self, subscriber: Subscriber[T]) -> None:
        """Stop offering items to *subscriber* (idempotent)."""
        self._subscribers.discard(subscriber)

    def publish(self, item: T, size: int, skip: Subscriber[T] | None = None) -> int:
        """Offer *item* to every subscriber (but *skip*) without waiting; return
        how many took it."""
        self._published += 1
        taken = 0
        # Copy: a slow subscriber is removed from the set while we loop.
        for subscriber in list(self._subscribers):
            if subscriber is skip:
                continue
            if subscriber.offer(item, size):  # the hot path: one call per delivery
                taken += 1
            else:
                self._overflow(subscriber)
        return taken

    def offer(self, subscriber: Subscriber[T], item: T, size: int) -> bool:
        """Offer *item* to one subscriber (echo mode), under the same policy."""
        if subscriber.offer(item, size):
            return True
        self._overflow(subscriber)
        return False

    def _overflow(self, subscriber: Subscriber[T]) -> None:
        if self.policy is SlowClientPolicy.DROP:
            self._dropped += 1
        else:
            self._slow_closed += 1
            self._subscribers.discard(subscriber)
            subscriber.closed_as_slow()

    def __len__(self) -> int:
        return len(self._subscribers)

    def __contains__(self, subscriber: object) -> bool:
        return subscriber in self._subscribers

    def statistics(self) -> HubStatistics:
        depths = [(s.queued_messages, s.queued_bytes) for s in self._subscribers]
        return HubStatistics(
            subscribers=len(depths),
            published=self._published,
            dropped=self._dropped,
            slow_closed=self._slow_closed,
            queued_messages=sum(m for m, _ in depths),
            queued_bytes=sum(b for _, b in depths),
            max_inbox=max((m for m, _ in depths), default=0),
        )


class Inbox(Generic[T]):
    """A socket-free subscriber: a bounded queue that one task reads.

    For embedding the hub without a server, and for testing it. Items count
    against the budget until they are received.
    """

    def __init__(self, budget: InboxBudget | None = None) -> None:
        self.budget = budget or InboxBudget()
        self._items: deque[tuple[T, int]] = deque()
        self.queued_bytes = 0
        self.closed = False
        """True once the hub closed this inbox as slow; what is queued stays readable."""
        self._arrived = trio.Event()

    @property
    def queued_messages(self) -> int:
        return len(self._items)

    def offer(self, item: T, size: int) -> bool:
        if self.closed or not self.budget.admits(len(self._items), self.queued_bytes, size):
            return False
        self._items.append((item, size))
        self.queued_bytes += size
        self._arrived.set()
        return True

    def closed_as_slow(self) -> None:
        self.closed = True
        self._arrived.set()

    async def receive(self) -> T:
        """The next item; :class:`trio.EndOfChannel` once closed and empty."""
        await trio.lowlevel.checkpoint()
        while not self._items:
            if self.closed:
                raise trio.EndOfChannel
            self._arrived = trio.Event()
            await self._arrived.wait()
        item, size = self._items.popleft()
        self.queued_bytes -= size
        return item
