"""Where a message goes: the one path into a room, for every sender.

A message enters a room from three sides, and each has one call here:

- a client's frame (the connection): :meth:`Broker.send`;
- the application (:meth:`~trio_ws_demo.server.BroadcastServer.broadcast`):
  :meth:`Broker.send_to`;
- the HTTP publish API (``POST /<room>``, which answers with where the
  messages landed): :meth:`Broker.publish`.

A broker decides where the message goes before it is delivered; only a broker
calls :meth:`Room.deliver <trio_ws_demo.rooms.Room.deliver>`, the room's
"hand it to everyone here, now" (a test greps for it). As in centrifuge, whose
``Node`` always publishes through a ``Broker`` and runs a single process on a
memory broker, there are two:

- :class:`LocalBroker` (here): one process, nothing shared; a message is
  delivered at once, in the order it was sent.
- :class:`~trio_ws_demo.backplane.RedisBackplane`: processes share each room
  through a Redis stream; a message goes there first and is delivered by the
  reader, on every process, in the stream's one order.

Joins go through it too: :meth:`Broker.follow` makes the room's shared state
(epoch, offsets, history) this process's before a client joins, and
:meth:`Broker.backfill` reads what a resuming client missed beyond the room's
own history. Like the rooms, nothing here does I/O: a plain ``def`` never
waits, and :class:`LocalBroker`'s ``async`` methods never checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .coalesce import coalescing
from .errors import BackplaneUnavailable
from .hub import Subscriber
from .idempotency import DEFAULT_IDEMPOTENCY_WINDOW, Landings
from .rooms import Kept, Room, Rooms
from .stats import BackplaneStatistics

__all__ = [
    "DEFAULT_STREAM_BYTES",
    "DEFAULT_STREAM_TTL",
    "Backfill",
    "Broker",
    "LocalBroker",
    "OnLanded",
]

#: Told where a client's keyed message landed: its room's epoch and its offset.
OnLanded = Callable[[str, int], None]

#: Messages read for a resuming client: ``(offset, time, message)``, oldest first.
Backfill = list[Kept]

# The shared history a broker across processes keeps beyond a room's own (in
# Redis: the room's stream), and for how long. Here, not in backplane/, since
# the server's options name them too.
#: Bytes of messages a room's shared history holds at most (``--stream-bytes``,
#: at least ``--history-bytes``): the oldest go first.
DEFAULT_STREAM_BYTES = 16 * 1024 * 1024
#: Seconds a room's shared history lives after its last message (``--stream-ttl``;
#: 0: for ever), so that a room nobody writes to leaves the shared store.
DEFAULT_STREAM_TTL = 86_400.0


class Broker(Protocol):
    """Where every message into a room goes first (see the module's docstring)."""

    def send(
        self,
        room: Room,
        message: str | bytes,
        frame: bytes | None = None,
        sender: Subscriber[bytes] | None = None,
        author: str = "",
        key: str | None = None,
        landed: OnLanded | None = None,
    ) -> int:
        """A client's *message* (already encoded as *frame*, if the caller has it)
        for *room*, from *sender* (told if it is refused), whose name is *author*
        (the v1 envelope's ``from``); never waits. Returns how many clients here
        took it now (0 if it is delivered later).

        With *key* (a v1 ``publish``'s ``id``), the same key in the same room
        within the idempotency window is not delivered again; *landed* is told
        where it landed (the first time's place, for a repeat)."""
        ...

    def send_to(self, room_name: str, message: str | bytes, author: str = "server") -> int:
        """The application's *message* for room *room_name*, which may have no
        clients here (or not exist); never waits. Returns as :meth:`send`."""
        ...

    async def publish(
        self,
        room_name: str,
        messages: list[str | bytes],
        author: str = "api",
        key: str | None = None,
    ) -> tuple[str, int]:
        """Publish *messages* (from *author*; with an idempotency *key*, only
        the first time within the window) in order and return the epoch and offset of the last
        once they are delivered (or taken by the shared stream). Raises
        :class:`~trio_ws_demo.errors.BackplaneUnavailable` (with the reason for a
        person) when they cannot be taken now: the caller may retry."""
        ...

    async def follow(self, room: str) -> None:
        """Before a client joins *room*: make its state the shared one. Raises
        nothing but Cancelled."""
        ...

    async def backfill(self, room: str, since: tuple[int, str]) -> Backfill | None:
        """For a client resuming after *since* ``(offset, epoch)``: the messages
        it missed from before the room's history (and maybe on into it: the
        join leaves out what the history holds), or None (not needed, or not
        to be had). Raises nothing but Cancelled."""
        ...

    def forget(self, room: Room) -> None:
        """*room* was freed (a :class:`~trio_ws_demo.rooms.Rooms` ``on_freed``)."""
        ...

    def statistics(self) -> BackplaneStatistics | None:
        """The shared link's counters; None when there is none to report."""
        ...


class LocalBroker:
    """One process, nothing shared: today's server without ``--redis``.

    A message is delivered to the room's clients at once, in the order sent;
    offsets and epochs are the room's own. With *history* (``--history``), a
    message for a room with no clients here still makes the room and is kept.
    """

    def __init__(
        self,
        rooms: Rooms,
        *,
        history: int = 0,
        idempotency_window: float = DEFAULT_IDEMPOTENCY_WINDOW,
    ) -> None:
        self._rooms = rooms
        self._history = history
        self.landings = Landings(idempotency_window)
        """Where keyed publishes landed (a repeat is answered from here)."""

    def send(
        self,
        room: Room,
        message: str | bytes,
        frame: bytes | None = None,
        sender: Subscriber[bytes] | None = None,
        author: str = "",
        key: str | None = None,
        landed: OnLanded | None = None,
    ) -> int:
        if key is None:
            taken = room.deliver(message, frame, sender=author, origin=sender)
        elif (earlier := self.landings.get(room.name, key)) is not None:
            if landed is not None:
                landed(*earlier)
            return 0
        else:
            taken = room.deliver(message, frame, sender=author, origin=sender)
            self.landings.put(room.name, key, (room.epoch, room.last_offset))
        if landed is not None:
            landed(room.epoch, room.last_offset)
        return taken

    def send_to(self, room_name: str, message: str | bytes, author: str = "server") -> int:
        existing = self._rooms.get(room_name)
        if existing is not None:
            return existing.deliver(message, sender=author)
        if not self._history:
            return 0  # nobody to tell, nothing to keep
        if not self._rooms.has_room_for(room_name):
            return 0
        return self._rooms.room(room_name).deliver(message, sender=author)

    async def publish(
        self,
        room_name: str,
        messages: list[str | bytes],
        author: str = "api",
        key: str | None = None,
    ) -> tuple[str, int]:
        if key is not None and (earlier := self.landings.get(room_name, key)) is not None:
            return earlier
        room = self._rooms.get(room_name)
        if room is None:
            if not self._rooms.has_room_for(room_name):
                raise BackplaneUnavailable("too many rooms")
            room = self._rooms.room(room_name)
        # A batch (POST lines) goes to each client in one write.
        with coalescing(many=len(messages) > 1):
            for message in messages:
                room.deliver(message, sender=author)
        epoch, offset = room.epoch, room.last_offset
        if key is not None:
            self.landings.put(room_name, key, (epoch, offset))
        self._rooms.prune(room_name)  # nobody there and nothing kept: no room to keep
        return epoch, offset

    async def follow(self, room: str) -> None:
        return None  # the room's state is this process's own

    async def backfill(self, room: str, since: tuple[int, str]) -> Backfill | None:
        return None  # what the history no longer holds is gone

    def forget(self, room: Room) -> None:
        return None

    def statistics(self) -> BackplaneStatistics | None:
        return None  # no link: the rooms' and hubs' counters are the whole story
