"""The process's memory budget: every byte a peer can make the server hold, in one count.

Each connection has its own bounds (a message's size, a client's queue, TLS
records, a history preload), and a request has its body limit. Those bound
one peer; nothing bounded them all: 10,000 peers each at their bound is tens
of GB. :class:`MemoryBudget` is the bound for the sum (``--max-memory``).

What counts, each where it is held:

* a message being assembled from fragments (:mod:`trio_ws_demo.protocol`);
* the frames queued for clients (:mod:`trio_ws_demo.server.outbox`), **each frame once**
  however many clients it is queued for, since the hub encodes a frame once
  and every queue holds the same bytes (:class:`QueuedFrames`);
* TLS records waiting behind a stuck write (:mod:`trio_ws_demo.server.outbox`);
* the Redis backfill handed to a joining client (:mod:`trio_ws_demo.server.lifecycle`);
* publish request bodies (:mod:`trio_ws_demo.server.publish`);
* the pages of a resume gap being read from Redis
  (:meth:`trio_ws_demo.backplane.link.RedisBackplane.backfill`, with a
  :class:`Holding`).

Past the limit the server refuses work instead of growing: a message that
does not fit closes its sender with 1013, a join or a POST gets 503. What is
already held is never dropped to make room: that would lose what was
accepted. Pure: plain ``def`` s that never wait.
"""

from __future__ import annotations

__all__ = ["DEFAULT_MAX_MEMORY", "Holding", "MemoryBudget", "QueuedFrames"]

#: 256 MiB: room for 25,000 clients each with a 10 KiB backlog, or a hundred
#: 1 MiB messages being assembled at once, on a machine of a few GiB.
DEFAULT_MAX_MEMORY = 256 * 1024 * 1024


class MemoryBudget:
    """Bytes held for peers, against one limit for the whole process."""

    __slots__ = ("limit", "refused", "used")

    def __init__(self, limit: int = DEFAULT_MAX_MEMORY) -> None:
        if limit < 1:
            raise ValueError("the memory budget must be positive")
        self.limit = limit
        self.used = 0
        """Bytes held now."""
        self.refused = 0
        """Requests for room that did not fit (a counter for /metrics)."""

    def fits(self, size: int) -> bool:
        """True if *size* more bytes would fit now (nothing is taken)."""
        if self.used + size <= self.limit:
            return True
        self.refused += 1
        return False

    def take(self, size: int) -> bool:
        """Hold *size* bytes if they fit; False (and nothing held) if not."""
        if self.used + size > self.limit:
            self.refused += 1
            return False
        self.used += size
        return True

    def force(self, size: int) -> None:
        """Hold *size* bytes that are held already, fit or not (they are counted,
        so that what comes next sees them; nothing is refused for them)."""
        self.used += size

    def release(self, size: int) -> None:
        self.used -= size


class Holding:
    """The bytes one task holds in one or more budgets at once (all or none).

    ``take`` holds a size in every budget or in none; ``force`` holds bytes
    that are here already; ``release`` gives back everything held (call it in
    a ``finally``). Pure: plain ``def`` s that never wait.
    """

    __slots__ = ("_budgets", "held")

    def __init__(self, *budgets: MemoryBudget) -> None:
        self._budgets = budgets
        self.held = 0
        """Bytes held now (the same in each budget)."""

    def take(self, size: int) -> bool:
        """Hold *size* more bytes in every budget if they fit in each; False
        (and nothing more held) if one refuses."""
        for index, budget in enumerate(self._budgets):
            if not budget.take(size):
                for taken in self._budgets[:index]:
                    taken.release(size)
                return False
        self.held += size
        return True

    def force(self, size: int) -> None:
        """Hold *size* more bytes that are held already, fit or not."""
        for budget in self._budgets:
            budget.force(size)
        self.held += size

    def release(self) -> None:
        """Give back everything held."""
        for budget in self._budgets:
            budget.release(self.held)
        self.held = 0


class QueuedFrames:
    """Frames queued for clients, counted once each against the budget.

    A frame published to a room is one ``bytes`` object in every client's
    queue; it costs its length once, while at least one queue holds it. The
    count is keyed by the object's identity, which is stable while a queue
    holds it (and so keeps it alive).
    """

    __slots__ = ("_budget", "_holders")

    def __init__(self, budget: MemoryBudget) -> None:
        self._budget = budget
        self._holders: dict[int, int] = {}

    def hold(self, frame: bytes | bytearray | memoryview) -> None:
        key = id(frame)
        holders = self._holders.get(key, 0)
        if not holders:
            self._budget.force(len(frame))
        self._holders[key] = holders + 1

    def drop(self, frame: bytes | bytearray | memoryview) -> None:
        key = id(frame)
        holders = self._holders.get(key, 0)
        if holders <= 1:
            if holders:
                del self._holders[key]
                self._budget.release(len(frame))
            return
        self._holders[key] = holders - 1

    def __len__(self) -> int:
        """Distinct frames queued now."""
        return len(self._holders)
