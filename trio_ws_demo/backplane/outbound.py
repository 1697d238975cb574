"""What waits for Redis: the backplane's bounded outbound queue, and receipts.

A message for Redis is queued here (a plain ``def``: queuing never waits) with
this process's next sequence number, and the link's writer takes it in batches.
This module owns what happens to a message between the two: the batch being
sent is *in flight* until Redis answers; when the link is lost, whatever was
waiting or in flight is handed back (:meth:`Outbound.unsent`) to be delivered
here once, and the sequence numbers of those delivered here are remembered
(bounded) so that the reader recognises one Redis did commit after all.

A :class:`Receipt` is what a publisher over HTTP waits on: Redis's answer for
each of its messages.
"""

from __future__ import annotations

import time
from collections import deque

import trio

from ..hub import Subscriber
from .streams import StreamId

__all__ = ["SEEN_BOUND", "Mark", "Outbound", "Pending", "Receipt"]

SEEN_BOUND = 4  # times the outbound limit: own unconfirmed messages remembered

#: Who got a message delivered here: the room's :attr:`~trio_ws_demo.rooms.Room.incarnation`
#: and its :attr:`~trio_ws_demo.rooms.Room.deliveries` count at that moment
#: (everyone who was in that room then; see :meth:`~trio_ws_demo.rooms.Room.record`).
Mark = tuple[int, int]


class Receipt:
    """What Redis made of a batch of messages published over HTTP (which waits
    for it): the last entry ID, or why not."""

    def __init__(self, count: int) -> None:
        self.pending = count
        self.last_id: StreamId | None = None
        self.error: str | None = None
        self.done = trio.Event()

    def settle(self, identifier: StreamId | None = None, error: str | None = None) -> None:
        if identifier is not None and (self.last_id is None or identifier > self.last_id):
            self.last_id = identifier
        if error is not None and self.error is None:
            self.error = error
        self.pending -= 1
        if self.pending <= 0:
            self.done.set()


class Pending:
    """A message waiting for Redis."""

    __slots__ = ("at", "author", "message", "receipt", "room", "sender", "seq")

    def __init__(
        self,
        room: str,
        message: str | bytes,
        seq: int,
        sender: Subscriber[bytes] | None,
        receipt: Receipt | None = None,
        author: str = "",
    ) -> None:
        self.room = room
        self.message = message
        self.author = author
        """Who sent it (the envelope's ``from``)."""
        self.at = time.time()
        self.seq = seq
        self.sender = sender
        self.receipt = receipt


class Outbound:
    """The queue of :class:`Pending` messages, at most *limit* of them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._waiting: deque[Pending] = deque()
        self._in_flight: list[Pending] = []
        self._idle: trio.Event | None = None
        self.wake = trio.Event()
        """Set when something was queued (the writer makes a new one)."""
        self._seq = 0
        self._delivered_here: dict[int, Mark] = {}
        """Own messages delivered here unconfirmed: sequence number -> who had
        it then (ordered, bounded)."""

    def __len__(self) -> int:
        return len(self._waiting)

    @property
    def in_flight(self) -> list[Pending]:
        """The batch the writer is sending: not confirmed yet."""
        return self._in_flight

    @in_flight.setter
    def in_flight(self, batch: list[Pending]) -> None:
        self._in_flight = batch
        if not batch and not self._waiting and self._idle is not None:
            self._idle.set()
            self._idle = None

    async def idle(self) -> None:
        """Return once nothing waits and nothing is in flight (Redis answered,
        or :meth:`unsent` took it all)."""
        if self._waiting or self._in_flight:
            if self._idle is None:
                self._idle = trio.Event()
            await self._idle.wait()

    def has_room_for(self, count: int) -> bool:
        return len(self._waiting) + count <= self.limit

    def add(
        self,
        room: str,
        message: str | bytes,
        sender: Subscriber[bytes] | None,
        receipt: Receipt | None = None,
        author: str = "",
    ) -> None:
        """Queue *message* under the next sequence number (the caller checked
        :meth:`has_room_for`), and wake the writer."""
        self._seq += 1
        self._waiting.append(Pending(room, message, self._seq, sender, receipt, author))
        self.wake.set()

    def take(self, most: int) -> list[Pending]:
        """The next batch (at most *most*), now in flight."""
        count = min(most, len(self._waiting))
        self.in_flight = batch = [self._waiting.popleft() for _ in range(count)]
        return batch

    def put_back(self, batch: list[Pending]) -> None:
        """*batch* was not sent after all: first in the queue again."""
        self._waiting.extendleft(reversed(batch))

    def unsent(self) -> list[Pending]:
        """Everything in flight or waiting, in order; the queue is empty after."""
        unsent = [*self.in_flight, *self._waiting]
        self._waiting = deque()
        self.in_flight = []
        return unsent

    def delivered_here(self, seq: int, mark: Mark) -> None:
        """Own message *seq* was delivered here without Redis's confirmation, to
        the clients *mark* names (see :data:`Mark`)."""
        self._delivered_here[seq] = mark
        while len(self._delivered_here) > SEEN_BOUND * self.limit:
            del self._delivered_here[next(iter(self._delivered_here))]

    def recognise(self, seq: int) -> Mark | None:
        """If own message *seq*, read back from Redis, was delivered here
        already: to whom (and it is forgotten now); else None."""
        return self._delivered_here.pop(seq, None)
