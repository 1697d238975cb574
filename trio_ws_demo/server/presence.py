"""Presence: who is in a room, and telling its ``trio-ws-demo.v1`` clients.

A room knows its members (name and since: :attr:`Room.members`, and with
``--redis`` :attr:`Room.remote_members` on other processes). When someone comes
or goes, the room notes it (:meth:`Room.presence_changed`) and this sender sends
every room's changes as **one frame per room per second at most**:

``{"type": "presence", "event": "join"|"leave"|"changes", "name", "joined",
"left", "clients", "room"}``, written by :func:`trio_ws_demo.envelopes.encode_presence`.

So a room where 10,000 clients join at once sends each of its v1 clients one
frame a second (with the count and up to 100 names each way), not 10,000.
Presence frames go out through the room's hub like any frame, so a joiner gets
them after its ``joined``/``resume`` frame and its history, never between.
"""

from __future__ import annotations

import trio

from ..rooms import Room

__all__ = ["PRESENCE_INTERVAL", "PresenceSender"]

#: At most one presence frame per room this often (seconds).
PRESENCE_INTERVAL = 1.0


class PresenceSender:
    """Sends rooms' presence changes, coalesced (see the module's docstring)."""

    def __init__(self, interval: float = PRESENCE_INTERVAL) -> None:
        self._interval = interval
        self._due: set[Room] = set()
        self._wake = trio.Event()

    def changed(self, room: Room) -> None:
        """A room's presence changed (a :attr:`Rooms.on_presence`); never waits."""
        self._due.add(room)
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while self._due:
                now = trio.current_time()
                ready = [room for room in self._due if room.presence_sent + self._interval <= now]
                for room in ready:
                    self._due.discard(room)
                    room.send_presence(now)
                if self._due:
                    await trio.sleep_until(
                        min(room.presence_sent for room in self._due) + self._interval
                    )
