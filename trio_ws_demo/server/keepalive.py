"""Keepalive for every connection from one task, instead of one task per connection.

A peer proves it is alive by sending anything at all (a pong, a message, a
ping). One that has been silent for ``interval`` seconds gets a ping; one
still silent ``timeout`` seconds later is let go. Each watched connection has
exactly one entry in a heap of due times; the task sleeps until the earliest
and re-reads the connection's :attr:`~Watched.last_seen` when it wakes, so
traffic costs the keepalive nothing but a timestamp.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Protocol

import trio

from ..frames import PING_FRAME

__all__ = ["Keepalive", "Watch", "Watched"]


class Watched(Protocol):
    """What the keepalive needs of a connection."""

    pinged_at: float

    @property
    def finished(self) -> bool: ...

    @property
    def last_seen(self) -> float: ...

    def send_ping(self, frame: bytes) -> None: ...

    def give_up(self) -> None: ...


class Watch:
    """One connection's place in the keepalive (see :meth:`Keepalive.unwatch`).

    The heap holds this small handle, not the connection, so a closed
    connection is freed at once even under heavy churn.
    """

    __slots__ = ("connection",)

    def __init__(self, connection: Watched) -> None:
        self.connection: Watched | None = connection


class Keepalive:
    """Pings silent peers and gives up on those that stay silent."""

    def __init__(self, interval: float, timeout: float) -> None:
        self.interval = interval
        self.timeout = timeout
        self._due: list[tuple[float, int, Watch]] = []
        self._order = itertools.count()
        self._sleep: trio.CancelScope | None = None
        self._unwatched = 0

    def watch(self, connection: Watched) -> Watch:
        """Start watching *connection*; pass the handle to :meth:`unwatch` when it ends."""
        watch = Watch(connection)
        self._schedule(connection.last_seen + self.interval, watch)
        return watch

    def unwatch(self, watch: Watch) -> None:
        """Forget a connection. Forgotten entries are pruned once they are half the
        heap, so churn cannot grow it beyond twice the connections watched."""
        watch.connection = None
        self._unwatched += 1
        if self._unwatched > len(self._due) // 2:
            self._due = [entry for entry in self._due if entry[2].connection is not None]
            heapq.heapify(self._due)
            self._unwatched = 0

    def __len__(self) -> int:
        return len(self._due)

    async def run(self) -> None:
        """Run forever (cancel to stop)."""
        while True:
            with trio.move_on_at(self._due[0][0] if self._due else math.inf) as self._sleep:
                await trio.sleep_forever()
            self._sleep = None
            self._check_due(trio.current_time())

    def _check_due(self, now: float) -> None:
        due = self._due
        while due and due[0][0] <= now:
            _, _, watch = heapq.heappop(due)
            connection = watch.connection
            if connection is None:
                self._unwatched -= 1
                continue
            if connection.finished:
                continue
            silent_since = connection.last_seen
            give_up_at = silent_since + self.interval + self.timeout
            if now >= give_up_at:
                connection.give_up()
            elif now >= silent_since + self.interval:
                if connection.pinged_at <= silent_since:
                    connection.pinged_at = now
                    connection.send_ping(PING_FRAME)
                self._schedule(give_up_at, watch)
            else:
                self._schedule(silent_since + self.interval, watch)

    def _schedule(self, when: float, watch: Watch) -> None:
        heapq.heappush(self._due, (when, next(self._order), watch))
        if self._sleep is not None and when < self._sleep.deadline:
            self._sleep.deadline = when
