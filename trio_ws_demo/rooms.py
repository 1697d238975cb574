"""Rooms: one conversation per URL path, with history, offsets and resume.

Pure like the hub (no sockets, nothing here awaits): a :class:`Rooms` registry
maps a room name to a :class:`Room`, which holds two hubs (plain clients get
the message as it was sent; clients of the ``trio-ws-demo.v1`` subprotocol get
a JSON envelope, written by :mod:`.envelopes`) and the room's history. Each
message is encoded at most once per room and form: the plain frame always, the
envelope only when a v1 client or the history needs it.

Offsets count the messages of a room from 1. The *epoch* names one run of a
room's offsets: it changes whenever they start again (the server restarted,
or a room was freed and forgotten), so an offset is only meaningful with its
epoch. A room lives while it has clients or history. Without a backplane
(``remember_freed``), :class:`Rooms` remembers the epoch and last offset of
the rooms it freed (the most recent ``max_rooms``): a room made again takes
them and counts on, so a resume from its last offset is recovered with
nothing missed, and one from further back (what was lost with the room's
history) is not.

Joining is one synchronous step: the history (or the part a resuming client
missed) is handed to the subscriber and the subscriber is added to the hub
with no checkpoint in between, so there is no gap and no duplicate between
history and live messages, whoever is publishing meanwhile.
"""

from __future__ import annotations

import itertools
import math
import re
import secrets
import time
import unicodedata
import urllib.parse
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from .deflate import FrameStream
from .envelopes import SUBPROTOCOL as SUBPROTOCOL
from .envelopes import (
    encode_ack,
    encode_backplane,
    encode_error,
    encode_joined,
    encode_message,
    encode_presence,
    encode_resume,
)
from .extensions import Compression
from .frames import encode_frame, frame_message
from .histogram import BROADCAST_BUCKETS, LATENCY_BUCKETS, Histogram
from .hub import Hub, HubStatistics, InboxBudget, SlowClientPolicy, Subscriber
from .reasons import Reason

__all__ = [
    "DEFAULT_HISTORY_BYTES",
    "DEFAULT_MAX_ROOMS",
    "DEFAULT_MAX_ROOM_NAME",
    "DEFAULT_ROOM_TTL",
    "ENTRY_OVERHEAD",
    "RESERVED_PATHS",
    "RESERVED_PREFIX",
    "DeliveryTimings",
    "Joined",
    "Kept",
    "Room",
    "RoomNameError",
    "Rooms",
    "RoomsStatistics",
    "room_from_path",
]

DEFAULT_MAX_ROOMS = 10_000
DEFAULT_MAX_ROOM_NAME = 128
DEFAULT_HISTORY_BYTES = 1024 * 1024
#: Names one presence frame lists each way (the count says how many changed).
PRESENCE_NAMES = 100
#: Seconds a room without clients keeps its history before it is freed.
DEFAULT_ROOM_TTL = 3600.0
#: Paths the server answers itself; they cannot be rooms.
RESERVED_PATHS = frozenset(
    {"/healthz", "/livez", "/readyz", "/health", "/metrics", "/rooms", "/favicon.ico"}
)
#: Paths under this prefix are answered by the server (``GET /rooms/<room>``: who is there).
RESERVED_PREFIX = "/rooms/"

# A room name: "/"-separated segments of RFC 3986 unreserved characters
# (letters, digits, - . _ ~) and of letters and digits of any script (sent
# percent-encoded as UTF-8, decoded and normalised to NFC here); "" is the
# default room (path "/"), and a trailing "/" names the same room.
_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")
#: The Unicode categories a segment may use beyond ASCII: letters and decimal digits.
_LETTERS_AND_DIGITS = frozenset({"Lu", "Ll", "Lt", "Lm", "Lo", "Nd"})


class RoomNameError(ValueError):
    """A path that names no room: ``str()`` is the detail for the answer's body,
    :attr:`label` the fixed reason it is counted under (never the path itself,
    which is request data: see :mod:`.reasons`)."""

    def __init__(self, detail: str, label: Reason) -> None:
        super().__init__(detail)
        self.label = label


def room_from_path(path: str, max_length: int = DEFAULT_MAX_ROOM_NAME) -> str:
    """The room named by a URL *path*; :class:`RoomNameError` (a ValueError, with
    the reason) if it is not one. The reason never repeats the path: it goes to
    log lines and bodies, and the path may carry anything a client typed."""
    if path in RESERVED_PATHS or path.startswith(RESERVED_PREFIX):
        raise RoomNameError("this path is reserved, not a room", Reason.RESERVED_PATH)
    name = path[1:] if path.startswith("/") else path
    if len(name) > 1 and name.endswith("/"):
        name = name[:-1]  # /ops/ is /ops, as a person types it
    segments = [_decoded(segment) for segment in name.split("/")] if name else []
    if any(
        segment is None or not _is_segment(segment) or segment in (".", "..")
        for segment in segments
    ):
        raise RoomNameError(
            "a room name is /-separated segments of letters (any language), digits "
            "and - . _ ~, percent-encoded as UTF-8 (no empty, '.' or '..' segments)",
            Reason.BAD_ROOM_NAME,
        )
    name = "/".join(segment for segment in segments if segment is not None)
    if f"/{name}" in RESERVED_PATHS or f"/{name}".startswith(RESERVED_PREFIX):
        raise RoomNameError("this path is reserved, not a room", Reason.RESERVED_PATH)
    if len(name.encode()) > max_length:
        raise RoomNameError(
            f"a room name has at most {max_length} bytes", Reason.ROOM_NAME_TOO_LONG
        )
    return name


def _decoded(segment: str) -> str | None:
    """A path segment with its %-escapes decoded (UTF-8) and normalised to NFC, so
    that café typed either way, or sent percent-encoded, is one room; None if the
    escapes are not UTF-8."""
    try:
        text = urllib.parse.unquote(segment, errors="strict")
    except UnicodeDecodeError:
        return None
    return unicodedata.normalize("NFC", text)


def _is_segment(segment: str) -> bool:
    """Letters (any script), decimal digits, and - . _ ~ (a decoded "/" is none)."""
    return bool(segment) and all(
        _SEGMENT.fullmatch(ch) or unicodedata.category(ch) in _LETTERS_AND_DIGITS for ch in segment
    )


@dataclass(frozen=True)
class RoomsStatistics:
    rooms: int
    history_messages: int
    history_bytes: int


@dataclass(frozen=True)
class Joined:
    """What a joining client is sent before live messages, first frame first."""

    frames: list[bytes]
    recovered: bool | None
    """For a resume: whether everything after the given offset was still there."""


class Kept(NamedTuple):
    """A message as a broker keeps or reads it (a history entry, a backfill)."""

    offset: int
    at: float
    """When it was sent (UNIX time)."""
    message: str | bytes
    sender: str = ""
    """Who sent it (the v1 envelope's ``from``)."""


#: What one history entry costs beyond its frames' bytes: the entry, its
#: offset and time, and the two bytes objects' headers (measured with
#: sys.getsizeof on CPython 3.11; counted so that --history-bytes bounds memory).
ENTRY_OVERHEAD = 200


class _Entry:
    """One kept message: its frame is the only copy (the text is decoded from
    it when an envelope is made), so history holds what it counts."""

    __slots__ = ("delivery", "json_frame", "offset", "plain_frame", "sender", "time")

    def __init__(
        self, offset: int, at: float, plain_frame: bytes, delivery: int = 0, sender: str = ""
    ) -> None:
        self.offset = offset
        self.time = at
        self.plain_frame = plain_frame
        self.sender = sender
        self.json_frame: bytes | None = None
        self.delivery = delivery
        """The room's delivery count when it was kept (0: never delivered here)."""


_incarnations = itertools.count(1)


class DeliveryTimings:
    """How late and how long each fan-out on this process was (``/metrics``).

    Observed once per message per process in :meth:`Room.deliver`, never per
    client: two clock reads and two histogram observations per message,
    whatever the room's size. "Delivered" means handed to every local
    client's outbox (the hub's fan-out); the write to each socket comes after,
    in that client's own task, and is not timed per message (that would cost a
    clock read per client).
    """

    __slots__ = ("broadcast", "lag")

    def __init__(self) -> None:
        self.lag = Histogram(LATENCY_BUCKETS)
        """Seconds from the message's own time (:attr:`Kept.at`) to its fan-out here."""
        self.broadcast = Histogram(BROADCAST_BUCKETS)
        """Seconds one fan-out took: encoding once, offering to every local client, keeping."""


class Room:
    """One room: its subscribers (plain and v1), offsets and history."""

    def __init__(
        self,
        name: str,
        budget: InboxBudget,
        policy: SlowClientPolicy,
        history: int,
        history_bytes: int,
        timings: DeliveryTimings | None = None,
        compression: Compression = Compression.OFF,
    ) -> None:
        self.name = name
        self.timings = timings
        """Where :meth:`deliver` records its lag and duration (shared by the rooms)."""
        self.incarnation = next(_incarnations)
        """Unique to this room object in this process (a room freed and made
        again is another one)."""
        self.deliveries = 0
        """Messages delivered or kept here so far, in order: every client has
        each one from its :attr:`_has_from` on (live, or replayed at its join)."""
        self._has_from: dict[Subscriber[bytes], int] = {}
        self._quiet: set[Subscriber[bytes]] = set()
        """Clients that asked not to get their own messages (``?self=0``)."""
        self._epoch_began = 1
        """The first delivery in the current epoch: a client that resumed in
        it, recovered, has every one since."""
        self.plain: Hub[bytes] = Hub(budget=budget, policy=policy)
        self.v1: Hub[bytes] = Hub(budget=budget, policy=policy)
        # What each hub broadcasts, as --compression shapes it (see deflate.py):
        # every frame either publishes goes through its stream, in order.
        self._plain_stream = FrameStream(compression)
        self._v1_stream = FrameStream(compression)
        self.epoch = secrets.token_hex(4)
        self.last_offset = 0
        self._max_history = history
        self._max_history_bytes = history_bytes
        self._history: deque[_Entry] = deque()
        self.history_bytes = 0
        self.members: dict[Subscriber[bytes], tuple[str, float]] = {}
        """Who is here: each client's name and when it joined (UNIX time)."""
        self.remote_members: dict[str, tuple[str, float]] = {}
        """Who is in this room on other processes (set by a backplane)."""
        self._joined: list[str] = []
        self._left: list[str] = []
        self.presence_sent = -math.inf
        """When the last presence frame went out (trio time): at most one a second."""
        self.on_presence: Callable[[Room], None] | None = None
        """Told when presence changed (by :class:`Rooms`: the server sends it)."""
        self.stale = 0
        """Entries dropped because their offset was not above :attr:`last_offset`
        (an offset must never name two messages in one epoch)."""
        self.idle_since: float | None = None
        """When its last client left (or it was made without one); None while it has
        clients. Set by :class:`Rooms`, which expires idle rooms."""

    @property
    def clients(self) -> int:
        return len(self.plain) + len(self.v1)

    @property
    def history_messages(self) -> int:
        return len(self._history)

    @property
    def oldest_offset(self) -> int:
        """The offset of the oldest message kept (last offset + 1 if none)."""
        return self._history[0].offset if self._history else self.last_offset + 1

    @property
    def alive(self) -> bool:
        return bool(self.clients or self._history)

    def deliver(
        self,
        message: str | bytes,
        plain_frame: bytes | None = None,
        *,
        offset: int | None = None,
        at: float | None = None,
        sender: str = "",
        origin: Subscriber[bytes] | None = None,
    ) -> int:
        """Deliver *message* (from *sender*) to everyone in the room, here and now, and keep it;
        never waits. The brokers' delivery call: only a broker
        (:mod:`trio_ws_demo.broker`, :mod:`trio_ws_demo.backplane`) calls it,
        once it has decided where the message goes (anyone else would skip
        the other processes).

        *plain_frame* is the message already encoded, if the caller has it. A
        backplane gives the shared *offset* and sending time *at*; an offset not
        above the last one is dropped and counted in :attr:`stale`.
        """
        if offset is None:
            offset = self.last_offset + 1
        elif offset <= self.last_offset:
            self.stale += 1
            return 0
        timings = self.timings
        if timings is not None:
            began = time.perf_counter()
            # A message with no time of its own is stamped now (below): no lag.
            # One stamped on another host may look early by that host's clock
            # skew: counted as 0, not as a negative lag.
            timings.lag.observe(0.0 if at is None else max(time.time() - at, 0.0))
        self.last_offset = offset
        self.deliveries += 1
        if plain_frame is None:
            plain_frame = encode_frame(message)
        taken = self.plain.publish(self._plain_stream.share(plain_frame), len(plain_frame))
        if self._max_history or len(self.v1):  # else nothing more to encode or keep
            at = time.time() if at is None else at
            entry = _Entry(self.last_offset, at, plain_frame, self.deliveries, sender)
            if self._max_history:
                self._remember(entry)
            if len(self.v1):
                json_frame = self._json_frame(entry, message)
                skip = origin if origin is not None and origin in self._quiet else None
                shared = self._v1_stream.share(json_frame)
                taken += self.v1.publish(shared, len(json_frame), skip)
        if timings is not None:
            timings.broadcast.observe(time.perf_counter() - began)
        return taken

    def is_quiet(self, subscriber: Subscriber[bytes]) -> bool:
        """Whether *subscriber* asked not to get its own messages back."""
        return subscriber in self._quiet

    def join(
        self,
        subscriber: Subscriber[bytes],
        *,
        v1: bool,
        since: tuple[int, str] | None = None,
        backfill: list[Kept] | None = None,
        name: str | None = None,
        own: bool = True,
    ) -> Joined:
        """Subscribe, and return what to send first (history, or what a resume missed).

        *backfill* is what a backplane read for a resume from further back than
        the history reaches (``(offset, time, message)``, oldest first, in this
        epoch): it fills the gap before the history, so ``recovered`` is true
        when the two together reach back to the client's offset.
        """
        self.idle_since = None
        if not own:
            self._quiet.add(subscriber)
        if name is not None:
            self.members[subscriber] = (name, time.time())
            self.presence_changed(joined=[name])
        if not v1:
            frames = [entry.plain_frame for entry in self._history]
            self._note_has_from(subscriber, self._history)
            self.plain.subscribe(subscriber)
            return Joined(frames, None)
        recovered: bool | None = None
        entries = list(self._history)
        if since is not None:
            offset, epoch = since
            oldest = entries[0].offset if entries else self.last_offset + 1
            if backfill and epoch == self.epoch and offset < oldest - 1:
                older = [
                    _Entry(kept.offset, kept.at, encode_frame(kept.message), sender=kept.sender)
                    for kept in backfill
                    if offset < kept.offset < oldest
                ]
                # Accepted only if it fills the whole gap as the history is *now*:
                # read before the join awaited its checks, the history may have
                # been trimmed past the backfill's end since (issue 27, bug A).
                meets = older and older[-1].offset + 1 >= oldest
                contiguous = older and older[-1].offset - older[0].offset + 1 == len(older)
                if meets and contiguous and older[0].offset == offset + 1:
                    oldest, entries = offset + 1, older + entries
            recovered = epoch == self.epoch and oldest - 1 <= offset <= self.last_offset
            if epoch == self.epoch:
                entries = [entry for entry in entries if entry.offset > offset]
            first = encode_resume(
                self.name, recovered, self.last_offset, self.epoch, self._max_history
            )
        else:
            first = encode_joined(self.name, self.last_offset, self.epoch, len(entries))
        frames = [encode_frame(first)]
        frames.extend(self._json_frame(entry) for entry in entries)
        self._note_has_from(subscriber, entries, self._epoch_began if recovered else None)
        self.v1.subscribe(subscriber)
        return Joined(frames, recovered)

    def _note_has_from(
        self, subscriber: Subscriber[bytes], replayed: Iterable[_Entry], has: int | None = None
    ) -> None:
        """*subscriber* has every delivery from the first one replayed to it on
        (or from the next one, if none was), or from *has* (a recovered resume
        had the rest before)."""
        first = next((entry.delivery for entry in replayed if entry.delivery), 0)
        first = first or self.deliveries + 1
        self._has_from[subscriber] = first if has is None else min(first, has)

    def follow(self, epoch: str, last_offset: int, entries: list[Kept]) -> None:
        """Take the shared state a backplane holds, in one step: epoch, last offset
        and history (``(offset, time, message)``, oldest first). Live clients
        stay; v1 clients learn of it from the backplane's frame."""
        self.epoch = epoch
        self.last_offset = last_offset
        self._epoch_began = self.deliveries + 1
        self._history.clear()
        self.history_bytes = 0
        if self._max_history:
            for kept in entries:
                frame = encode_frame(kept.message)
                self._remember(_Entry(kept.offset, kept.at, frame, sender=kept.sender))

    def record(
        self, offset: int, at: float, message: str | bytes, *, after: int, sender: str = ""
    ) -> int:
        """Keep a message at its shared *offset*: this process delivered it
        already, as delivery number *after*, while Redis had not confirmed it
        (see the backplane). It is sent only to the clients that do not have
        it: those that joined since and were not replayed it. Returns how many."""
        if offset <= self.last_offset:
            self.stale += 1
            return 0
        self.last_offset = offset
        self.deliveries += 1
        entry = _Entry(offset, at, encode_frame(message), self.deliveries, sender)
        if self._max_history:
            self._remember(entry)
        taken = 0
        for subscriber in [s for s, first in self._has_from.items() if first > after]:
            if subscriber in self.plain:
                taken += self.plain.offer(subscriber, entry.plain_frame, len(entry.plain_frame))
            elif subscriber in self.v1:
                frame = self._json_frame(entry, message)
                taken += self.v1.offer(subscriber, frame, len(frame))
        return taken

    def go_local(self) -> None:
        """The backplane is gone: offsets from here on are this process's own, so
        they get an epoch of their own."""
        self.epoch = secrets.token_hex(4)
        self._epoch_began = self.deliveries + 1

    def tell(self, subscriber: Subscriber[bytes], reason: str) -> None:
        """Send one v1 client an error frame about its own doing (e.g. a refused
        message); nothing for a plain client, which has no frame for it."""
        if subscriber in self.v1:
            frame = encode_frame(encode_error(self.name, reason))
            self.v1.offer(subscriber, frame, len(frame))

    def ack(
        self, subscriber: Subscriber[bytes], identifier: str | int, epoch: str, offset: int
    ) -> None:
        """Tell one v1 client where its ``publish`` landed (if it is still here)."""
        if subscriber in self.v1:
            frame = encode_frame(encode_ack(self.name, identifier, epoch, offset))
            self.v1.offer(subscriber, frame, len(frame))

    def notify_backplane(self, *, up: bool, recovered: bool | None = None) -> None:
        """Tell the v1 clients the link to the other servers went down or came back
        (not a message: no offset, not kept), with the room's epoch and last offset."""
        if len(self.v1):
            text = encode_backplane(
                self.name, self.epoch, self.last_offset, up=up, recovered=recovered
            )
            frame = encode_frame(text)
            self.v1.publish(self._v1_stream.share(frame), len(frame))

    def leave(self, subscriber: Subscriber[bytes]) -> None:
        self._has_from.pop(subscriber, None)
        self._quiet.discard(subscriber)
        self.plain.unsubscribe(subscriber)
        self.v1.unsubscribe(subscriber)
        member = self.members.pop(subscriber, None)
        if member is not None:
            self.presence_changed(left=[member[0]])

    # -- presence -----------------------------------------------------------------

    def presence_changed(self, joined: Iterable[str] = (), left: Iterable[str] = ()) -> None:
        """Note who came and went; v1 clients hear of it in the next presence frame."""
        self._joined.extend(joined)
        self._left.extend(left)
        if self.on_presence is not None and (self._joined or self._left):
            self.on_presence(self)

    @property
    def presence_pending(self) -> bool:
        return bool(self._joined or self._left)

    def who(self) -> list[tuple[str, float]]:
        """Everyone here and on other processes: (name, since), earliest first."""
        return sorted([*self.members.values(), *self.remote_members.values()], key=lambda m: m[1])

    def send_presence(self, now: float) -> None:
        """One presence frame to the v1 clients with every change since the last
        (coalesced: at most :data:`PRESENCE_NAMES` names each way, and the count)."""
        joined, left = self._joined, self._left
        self._joined, self._left = [], []
        self.presence_sent = now
        if not (joined or left) or not len(self.v1):
            return
        clients = len(self.members) + len(self.remote_members)
        frame = encode_frame(encode_presence(self.name, joined, left, clients, PRESENCE_NAMES))
        self.v1.publish(self._v1_stream.share(frame), len(frame))

    def _remember(self, entry: _Entry) -> None:
        self._history.append(entry)
        self.history_bytes += self._size(entry)
        self._trim()

    def _trim(self) -> None:
        while self._history and (
            len(self._history) > self._max_history or self.history_bytes > self._max_history_bytes
        ):
            self.history_bytes -= self._size(self._history.popleft())

    def _json_frame(self, entry: _Entry, message: str | bytes | None = None) -> bytes:
        if entry.json_frame is None:
            if message is None:
                message = frame_message(entry.plain_frame)
            envelope = encode_message(self.name, entry.offset, entry.time, message, entry.sender)
            entry.json_frame = encode_frame(envelope)
            if self._history and entry.offset >= self._history[0].offset:
                self.history_bytes += len(entry.json_frame)  # kept with its entry
                self._trim()
        return entry.json_frame

    @staticmethod
    def _size(entry: _Entry) -> int:
        json_frame = entry.json_frame
        size = ENTRY_OVERHEAD + len(entry.plain_frame) + len(entry.sender)
        return size + (len(json_frame) if json_frame else 0)


class Rooms:
    """Every room of a server, created on first join and freed when empty."""

    def __init__(
        self,
        *,
        budget: InboxBudget,
        policy: SlowClientPolicy,
        max_rooms: int = DEFAULT_MAX_ROOMS,
        history: int = 0,
        history_bytes: int = DEFAULT_HISTORY_BYTES,
        room_ttl: float | None = DEFAULT_ROOM_TTL,
        clock: Callable[[], float] = time.monotonic,
        on_freed: Callable[[Room], None] | None = None,
        on_presence: Callable[[Room], None] | None = None,
        remember_freed: bool = False,
        compression: Compression = Compression.OFF,
    ) -> None:
        self._budget = budget
        self._compression = compression
        self.room_ttl = room_ttl
        """Seconds a room with no clients keeps its history; None: for ever."""
        self._clock = clock
        self._policy = policy
        self.max_rooms = max_rooms
        self._history = history
        self._history_bytes = history_bytes
        self._rooms: dict[str, Room] = {}
        self.timings = DeliveryTimings()
        """Every room's fan-outs, timed (one observation per message each)."""
        self.on_freed = on_freed
        """Told when a room is freed (the broker forgets it)."""
        self.on_presence = on_presence
        """Given to every room: presence changed there."""
        # Counters of rooms already freed, so that totals never go down.
        self._retired = (0, 0, 0)  # published, dropped, slow closed
        self._freed: OrderedDict[str, tuple[str, int]] | None = (
            OrderedDict() if remember_freed else None
        )
        """The (epoch, last offset) of rooms freed, least recently freed first, at
        most ``max_rooms``; None with a backplane, which holds the rooms' state."""

    def __len__(self) -> int:
        return len(self._rooms)

    def get(self, name: str) -> Room | None:
        return self._rooms.get(name)

    def has_room_for(self, name: str) -> bool:
        """False if *name* would be a new room past ``max_rooms``, when not even the
        least recently used room without clients can give way."""
        if name in self._rooms or len(self._rooms) < self.max_rooms:
            return True
        idle = [room for room in self._rooms.values() if room.idle_since is not None]
        if not idle:
            return False
        self._free(min(idle, key=lambda room: room.idle_since or 0.0))
        return True

    def expire(self) -> int:
        """Free every room that has had no client for ``room_ttl`` seconds, with its
        history; return how many. (The server calls this now and then.)"""
        if self.room_ttl is None:
            return 0
        deadline = self._clock() - self.room_ttl
        expired = [
            room
            for room in self._rooms.values()
            if room.idle_since is not None and room.idle_since <= deadline
        ]
        for room in expired:
            self._free(room)
        return len(expired)

    def room(self, name: str) -> Room:
        """The room *name*, created if need be (check :meth:`has_room_for` first)."""
        room = self._rooms.get(name)
        if room is None:
            room = self._rooms[name] = Room(
                name,
                self._budget,
                self._policy,
                self._history,
                self._history_bytes,
                self.timings,
                self._compression,
            )
            if self._freed is not None and (was := self._freed.pop(name, None)) is not None:
                room.epoch, room.last_offset = was  # its offsets go on: no false alarm
            room.on_presence = self.on_presence
            room.idle_since = self._clock()  # until a client joins
        return room

    def leave(self, room: Room, subscriber: Subscriber[bytes]) -> None:
        """Remove *subscriber*; free the room once it has no clients and no history."""
        room.leave(subscriber)
        if not room.clients and room.idle_since is None:
            room.idle_since = self._clock()
        self._free_if_unused(room)

    def prune(self, name: str) -> None:
        """Free room *name* if nobody is in it and it keeps nothing (a room made
        ready for a client that never joined)."""
        room = self._rooms.get(name)
        if room is not None:
            self._free_if_unused(room)

    def _free_if_unused(self, room: Room) -> None:
        if not room.alive:
            self._free(room)

    def _free(self, room: Room) -> None:
        if self._rooms.get(room.name) is room:
            del self._rooms[room.name]
            if self.on_freed is not None:
                self.on_freed(room)
            if self._freed is not None:
                self._freed[room.name] = (room.epoch, room.last_offset)
                self._freed.move_to_end(room.name)
                while len(self._freed) > max(self.max_rooms, 1):
                    self._freed.popitem(last=False)
            published, dropped, slow = self._retired
            plain, v1 = room.plain.statistics(), room.v1.statistics()
            self._retired = (
                published + plain.published,
                dropped + plain.dropped + v1.dropped,
                slow + plain.slow_closed + v1.slow_closed,
            )

    def rooms(self) -> list[Room]:
        return list(self._rooms.values())

    def hub_statistics(self) -> HubStatistics:
        """Every room's hubs added up (published counts each message once)."""
        published, dropped, slow = self._retired
        subscribers = queued_messages = queued_bytes = max_inbox = 0
        for room in self._rooms.values():
            plain, v1 = room.plain.statistics(), room.v1.statistics()
            published += plain.published
            for stats in (plain, v1):
                subscribers += stats.subscribers
                dropped += stats.dropped
                slow += stats.slow_closed
                queued_messages += stats.queued_messages
                queued_bytes += stats.queued_bytes
                max_inbox = max(max_inbox, stats.max_inbox)
        return HubStatistics(
            subscribers=subscribers,
            published=published,
            dropped=dropped,
            slow_closed=slow,
            queued_messages=queued_messages,
            queued_bytes=queued_bytes,
            max_inbox=max_inbox,
        )

    def statistics(self) -> RoomsStatistics:
        rooms = self._rooms.values()
        return RoomsStatistics(
            rooms=len(self._rooms),
            history_messages=sum(r.history_messages for r in rooms),
            history_bytes=sum(r.history_bytes for r in rooms),
        )
