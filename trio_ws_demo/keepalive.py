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

from .frames import PING_FRAME

__all__ = ["Keepalive", "Watched"]


class Watched(Protocol):
    """What the keepalive needs of a connection."""

    pinged_at: float

    @property
    def finished(self) -> bool: ...

    @property
    def last_seen(self) -> float: ...

    def send_ping(self, frame: bytes) -> None: ...

    def give_up(self) -> None: ...


class Keepalive:
    """Pings silent peers and gives up on those that stay silent."""

    def __init__(self, interval: float, timeout: float) -> None:
        self.interval = interval
        self.timeout = timeout
        self._due: list[tuple[float, int, Watched]] = []
        self._order = itertools.count()
        self._sleep: trio.CancelScope | None = None

    def watch(self, connection: Watched) -> None:
        """Start watching *connection* (until it is finished)."""
        self._schedule(connection.last_seen + self.interval, connection)

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
            _, _, connection = heapq.heappop(due)
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
                self._schedule(give_up_at, connection)
            else:
                self._schedule(silent_since + self.interval, connection)

    def _schedule(self, when: float, connection: Watched) -> None:
        heapq.heappush(self._due, (when, next(self._order), connection))
        if self._sleep is not None and when < self._sleep.deadline:
            self._sleep.deadline = when
