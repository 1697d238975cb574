"""One room's link to its shared Redis stream: the backplane's per-room state machine.

Pure (no I/O, nothing awaits), so each transition is one synchronous step that
no client message can fall into. A :class:`RoomFeed` is in one of three states:

- ``LOCAL``: the room publishes here only, under a local epoch of its own.
- ``LOADING``: its shared state is being read from Redis; still local.
- ``FOLLOWED``: the room relays every message to Redis and publishes what it
  reads back, under the stream's epoch and offsets.

A room gets the shared epoch and offset only in the step that makes it
FOLLOWED, and only a FOLLOWED room relays: so a message published here always
has an offset that no other process can give to another message.

The stream is the truth. Its entry IDs are ``EPOCH-OFFSET``: the epoch is the
time (ms, on Redis's clock) the stream was started, written as a marker entry
``EPOCH-0``; messages are ``EPOCH-1``, ``EPOCH-2``, … (:mod:`.streams` owns
the format). A stream that is deleted and written again starts a later epoch,
so offsets restart under a new name, never under the old one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..rooms import Kept, Room
from .streams import StreamId

__all__ = ["TRANSITIONS", "FeedState", "RoomFeed", "Transition"]


class FeedState(enum.Enum):
    LOCAL = "local"
    LOADING = "loading"
    FOLLOWED = "followed"


@dataclass(frozen=True)
class Transition:
    """One row of the state machine: what happens, and what a client sees."""

    source: FeedState
    event: str
    target: FeedState
    epoch: str
    """The epoch the room's clients see afterwards."""
    frame: str
    """The frame v1 clients get (plain clients get no frame)."""


LOCAL, LOADING, FOLLOWED = FeedState.LOCAL, FeedState.LOADING, FeedState.FOLLOWED

#: Every transition there is (a test checks each against :class:`RoomFeed`).
TRANSITIONS = (
    Transition(LOCAL, "load", LOADING, "unchanged (local)", "none"),
    Transition(
        LOADING,
        "loaded",
        FOLLOWED,
        "the stream's, at the last offset this process read (or the stream's end)",
        '{"type": "backplane", "up": true, "recovered": <continued where it left>}',
    ),
    Transition(
        LOADING, "failed", LOCAL, "unchanged (local)", "none (WARNING, retried; /healthz 503)"
    ),
    Transition(LOADING, "link lost", LOCAL, "unchanged (local)", "none"),
    Transition(
        FOLLOWED, "link lost", LOCAL, "a new local one", '{"type": "backplane", "up": false}'
    ),
    Transition(
        FOLLOWED,
        "stream restarted",
        FOLLOWED,
        "the stream's new one, from offset 0",
        '{"type": "backplane", "up": true, "recovered": false}'
        " (true if the old epoch had no message: a new room's stream is born)",
    ),
)
_ALLOWED = {(row.source, row.event): row.target for row in TRANSITIONS}


class RoomFeed:
    """A room's place in its stream, and its state (see the module's docstring)."""

    __slots__ = ("failures", "last_id", "retry_at", "room", "state")

    def __init__(self, room: Room) -> None:
        self.room = room
        self.state = LOCAL
        self.last_id: StreamId | None = None
        """The last entry read from the stream; kept while LOCAL, so that after
        a reconnect reading resumes there and nothing committed meanwhile is skipped."""
        self.failures = 0
        self.retry_at = 0.0
        """When a failed load may be tried again (a clock time; 0: at once)."""

    @property
    def name(self) -> str:
        return self.room.name

    def _move(self, event: str) -> None:
        target = _ALLOWED.get((self.state, event))
        if target is None:
            raise RuntimeError(f"room feed {self.name!r}: no {event!r} from {self.state.value}")
        self.state = target

    def begin_load(self) -> None:
        self._move("load")

    def loaded(
        self,
        epoch: int,
        position: StreamId,
        history: list[Kept],
        continued: bool,
    ) -> None:
        """The load read the stream: follow it from *position* (an ID in *epoch*).
        *continued*: reading goes on where this process left, so clients miss nothing."""
        self._move("loaded")
        self.failures = 0
        self.last_id = position
        self.room.follow(str(epoch), position[1], history)
        self.room.notify_backplane(up=True, recovered=continued)

    def failed(self, now: float, first_delay: float, max_delay: float) -> float:
        """The load failed: local again until a retry; returns the delay."""
        self._move("failed")
        delay: float = min(first_delay * 2.0**self.failures, max_delay)
        self.failures += 1
        self.retry_at = now + delay
        return delay

    def link_lost(self) -> None:
        was = self.state
        if was is LOCAL:
            return
        self._move("link lost")
        self.retry_at = 0.0
        if was is FOLLOWED:
            self.room.go_local()
            self.room.notify_backplane(up=False)

    def restarted(self, epoch: int, *, recovered: bool = False) -> None:
        """The stream began a new epoch (it was deleted, expired or fenced, or
        it is a new room's first): offsets from 0. *recovered*: the old epoch
        had no message, so nothing was missed."""
        self._move("stream restarted")
        self.room.follow(str(epoch), 0, [])
        self.room.notify_backplane(up=True, recovered=recovered)

    def accepts(self, identifier: StreamId) -> bool:
        """Whether an entry read from the stream is new here (an XREAD still in
        flight from an earlier follow may return what was loaded since)."""
        return self.state is FOLLOWED and (self.last_id is None or identifier > self.last_id)

    def __repr__(self) -> str:
        return f"<RoomFeed {self.name!r} {self.state.value} at {self.last_id}>"
