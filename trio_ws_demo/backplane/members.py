"""Presence across processes, through the backplane's Redis.

Each room has a hash ``trio-ws-demo:members:ROOM``: one field per client on
any process (``PROCESS:CLIENT`` → ``[name, since]``). Each process says it is
alive with a key ``trio-ws-demo:alive:PROCESS`` that expires ``ttl`` seconds
after its last refresh. Once a second, every process

1. refreshes its alive key, and writes its own members' changes (HSET/HDEL);
2. reads the hashes of the rooms it has clients in, keeps the fields of
   processes that are alive (and deletes those of dead ones), and tells each
   room who came and went on the other processes
   (:meth:`~trio_ws_demo.rooms.Room.presence_changed`).

While Redis refuses writes (``maxmemory``), syncing waits and the link stays up;
the first sync after a refused one writes this process's members again, all
of them, and so does the sync after a read that finds one of them missing
(the others took this process for dead while its alive key could not be
refreshed): a member is never lost for good (finding R12).
So the members of a process killed with SIGKILL leave everyone's list when its
key expires: ``ttl`` is ``2 * --ping-interval`` minus the 1 s of reading.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from typing import TYPE_CHECKING, Any

import trio

from ..rooms import Rooms
from .streams import alive_key, members_key

if TYPE_CHECKING:
    import coredis

__all__ = ["SharedPresence"]

logger = logging.getLogger("trio_ws_demo.backplane")

SYNC_INTERVAL = 1.0


#: A member of this process: (id of its client, when it joined).
_Member = tuple[int, float]


class SharedPresence:
    """Keeps this process's members in Redis and reads the others' (see above)."""

    def __init__(self, rooms: Rooms, process: str, ttl: float) -> None:
        self._rooms = rooms
        self._process = process
        self.ttl = max(ttl, 2 * SYNC_INTERVAL)
        self._written: dict[str, dict[_Member, str]] = {}
        """What Redis holds of ours: room -> member -> its field."""
        self._refreshed = -math.inf
        """When the members hashes' expiry was last refreshed (trio time)."""
        self._rewrite = False
        """Write every member of ours again at the next sync, not only who came:
        a sync was refused, or our fields were found missing (finding R12)."""
        self._link: coredis.Redis[bytes] | None = None
        """The link while :meth:`run` runs."""

    async def run(self, link: coredis.Redis[bytes]) -> None:
        """Sync once a second while the link is up (in the link's nursery)."""
        self._written.clear()  # Redis may have restarted: write everything again
        from coredis.exceptions import ResponseError

        self._link = link
        try:
            while True:
                try:
                    await self._sync(link)
                except ResponseError as exc:
                    # Redis refuses writes (maxmemory, READONLY): presence waits, the
                    # link stays up (a command error is not a lost link). Part of the
                    # pipeline may have been refused, and our alive key may expire
                    # meanwhile (then the others delete our fields as a dead
                    # process's): the next sync writes all of ours again.
                    self._rewrite = True
                    logger.debug("presence: Redis refused a write: %s", exc)
                await trio.sleep(SYNC_INTERVAL)
        finally:
            self._link = None
            with (
                trio.CancelScope(shield=True),
                trio.move_on_after(1),
                contextlib.suppress(Exception),
            ):
                await self._leave(link)

    async def _sync(self, link: coredis.Redis[bytes]) -> None:
        wanted = {
            room.name: {(id(client), since): name for client, (name, since) in room.members.items()}
            for room in self._rooms.rooms()
            if room.members
        }
        written: dict[str, dict[_Member, str]] = {}
        # Each hash expires (2 x ttl) unless refreshed: a room whose processes
        # all died leaves Redis. Refreshed when written, and every ttl / 2.
        now_clock = trio.current_time()
        refresh = now_clock - self._refreshed >= self.ttl / 2
        if refresh:
            self._refreshed = now_clock
        expiry = int(self.ttl * 2000)
        rewrite, self._rewrite = self._rewrite, False
        async with link.pipeline(transaction=False) as pipe:
            pipe.set(alive_key(self._process), b"1", px=int(self.ttl * 1000))
            for room in set(wanted) | set(self._written):
                now, before = wanted.get(room, {}), self._written.get(room, {})
                # Only who came and went is encoded and written, not everyone each second.
                added = {
                    member: before.get(member) or self._field(member)
                    for member in now
                    if rewrite or member not in before
                }
                gone = [field for member, field in before.items() if member not in now]
                if added:
                    pipe.hset(
                        members_key(room),
                        {
                            field: json.dumps([now[member], round(member[1], 3)])
                            for member, field in added.items()
                        },
                    )
                if gone:
                    pipe.hdel(members_key(room), gone)
                if now and (added or refresh):
                    pipe.pexpire(members_key(room), expiry)
                if now:
                    written[room] = {member: before.get(member) or added[member] for member in now}
        self._written = written
        await self._read(link)

    def _field(self, member: _Member) -> str:
        """A member's field: this process, the client, when it joined (ids are reused)."""
        client, since = member
        return f"{self._process}:{client:x}.{int(since * 1000)}"

    async def _read(self, link: coredis.Redis[bytes]) -> None:
        rooms = [room for room in self._rooms.rooms() if room.clients]
        if not rooms:
            return
        async with link.pipeline(transaction=False) as pipe:
            requests = [pipe.hgetall(members_key(room.name)) for room in rooms]
        tables: list[dict[str, str]] = []
        processes: set[str] = set()
        for request in requests:
            fields = {_text(f): _text(v) for f, v in (await request).items()}
            tables.append(fields)
            processes.update(f.partition(":")[0] for f in fields)
        processes.discard(self._process)
        ordered = sorted(processes)
        alive: set[str] = set()
        if ordered:
            values = await link.mget([alive_key(p) for p in ordered])
            alive = {p for p, value in zip(ordered, values, strict=True) if value is not None}
        dead: dict[str, list[str]] = {}
        malformed = 0
        for room, fields in zip(rooms, tables, strict=True):
            mine = self._written.get(room.name, {})
            if any(field not in fields for field in mine.values()):
                self._rewrite = True  # deleted (taken for a dead process's): write again
            remote, dead_fields, skipped = self._others(fields, alive)
            malformed += skipped
            if dead_fields:
                dead[room.name] = dead_fields
            before = room.remote_members
            joined = [remote[f][0] for f in remote if f not in before]
            left = [before[f][0] for f in before if f not in remote]
            room.remote_members = remote
            room.presence_changed(joined, left)
        if malformed:
            logger.warning(
                "skipped %d malformed presence fields in Redis (not written by this server)",
                malformed,
                extra={"event": "presence_malformed", "count": malformed},
            )
        if dead:  # whoever sees a dead process's members first deletes them
            async with link.pipeline(transaction=False) as pipe:
                for room_name, dead_fields in dead.items():
                    pipe.hdel(members_key(room_name), dead_fields)

    def _others(
        self, fields: dict[str, str], alive: set[str]
    ) -> tuple[dict[str, tuple[str, float]], list[str], int]:
        """Of a members hash: the other live processes' members (field ->
        ``(name, since)``), the fields of dead ones, and how many were malformed."""
        remote: dict[str, tuple[str, float]] = {}
        dead: list[str] = []
        malformed = 0
        for field, value in fields.items():
            process = field.partition(":")[0]
            if process == self._process:
                continue
            if process not in alive:
                dead.append(field)
                continue
            member = _member(value)
            if member is None:
                malformed += 1
            else:
                remote[field] = member
        return remote, dead, malformed

    async def elsewhere(self, room: str) -> list[tuple[str, float]]:
        """Who is in *room* on the other live processes, read from Redis now
        (for ``GET /rooms/ROOM`` where this process has no client of the room,
        so that it does not sync it). Empty while the link is down."""
        link = self._link
        if link is None:
            return []
        fields = {_text(f): _text(v) for f, v in (await link.hgetall(members_key(room))).items()}
        ordered = sorted({f.partition(":")[0] for f in fields} - {self._process})
        values = await link.mget([alive_key(p) for p in ordered]) if ordered else []
        alive = {p for p, value in zip(ordered, values, strict=True) if value is not None}
        return list(self._others(fields, alive)[0].values())

    async def _leave(self, link: coredis.Redis[bytes]) -> None:
        """A clean stop: our members leave everyone's list at once."""
        async with link.pipeline(transaction=False) as pipe:
            pipe.delete([alive_key(self._process)])
            for room, fields in self._written.items():
                if fields:
                    pipe.hdel(members_key(room), list(fields.values()))
        self._written = {}


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _member(value: str) -> tuple[str, float] | None:
    """A member field's ``[name, since]``, or None if it is not one. Anything may
    be in Redis (another version, a hand edit): a 400-digit number, JSON nested
    a million deep or an infinite time must skip that field, never stop the
    process (finding R18), so every error of the parse is caught here."""
    try:
        name, since = json.loads(value)
        when = float(since)
    except Exception:  # OverflowError, RecursionError, ValueError, TypeError, ...
        return None
    if not isinstance(name, str) or not math.isfinite(when):
        return None
    return name, when
