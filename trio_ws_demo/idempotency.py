"""Publish once: where a keyed publish landed, so that a retry publishes nothing new.

A backend retries a ``POST`` whose answer it lost (with the same
``Idempotency-Key``), and a v1 client resends a ``publish`` after a reconnect
(with the same ``id``). Either way the first publish's ``(epoch, offset)`` is
the answer, and the message is not delivered again: the same key in the same
room within ``--idempotency-window`` is the same publish.

This is the one-process store (:class:`~trio_ws_demo.broker.LocalBroker`'s);
with ``--redis`` the check is made inside the Redis publish function, atomic
with the write, so it holds across processes and across a retry to another
one. Pure: nothing here awaits. Bounded twice: by the window, and by
:data:`MAX_KEYS` (the oldest key goes first, as it would expire first).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["DEFAULT_IDEMPOTENCY_WINDOW", "MAX_KEYS", "Landed", "Landings"]

#: Seconds a key names its first publish (``--idempotency-window``).
DEFAULT_IDEMPOTENCY_WINDOW = 300.0
#: Keys one process remembers at most (about 200 bytes each).
MAX_KEYS = 10_000

#: Where a message landed: its room's epoch and its offset.
Landed = tuple[str, int]


class Landings:
    """(room, key) -> where it landed, for *window* seconds, at most *limit* keys."""

    def __init__(
        self,
        window: float = DEFAULT_IDEMPOTENCY_WINDOW,
        limit: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self._limit = limit
        self._clock = clock
        self._landed: OrderedDict[tuple[str, str], tuple[float, Landed]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._landed)

    def get(self, room: str, key: str) -> Landed | None:
        """Where *key*'s publish in *room* landed, if it is within the window."""
        self._expire()
        found = self._landed.get((room, key))
        return None if found is None else found[1]

    def put(self, room: str, key: str, landed: Landed) -> None:
        self._landed[(room, key)] = (self._clock() + self.window, landed)
        self._landed.move_to_end((room, key))
        while len(self._landed) > self._limit:
            self._landed.popitem(last=False)

    def _expire(self) -> None:
        now = self._clock()
        while self._landed:
            key, (until, _) = next(iter(self._landed.items()))
            if until > now:
                return
            del self._landed[key]
