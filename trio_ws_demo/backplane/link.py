"""The link to Redis: connection, heartbeat, writer, reader, room loader.

This module owns the I/O of the backplane, the one place that talks to Redis
about rooms; what it sends and reads is spelled in :mod:`.streams` (keys, the
Redis functions, an entry's fields), what waits to be sent in :mod:`.outbound`,
and which errors mean a lost link in :mod:`.faults`.

Why Redis Streams, not pub/sub: one stream per room (``trio-ws-demo:room:NAME``)
gives everything the rooms need from one command set. The stream has one
order, which every process reads with ``XREAD``; its entry IDs are the room's
``EPOCH-OFFSET`` (see :mod:`.feeds` and :mod:`.streams`), so an offset names the same message on
every process; and the stream *is* the history (``MAXLEN ~`` trims it), so a
client that resumes on another process, or from further back than memory
reaches, is served from it. Pub/sub would need a second store for history and a
way to agree on offsets.

It is one of the two brokers (:class:`~trio_ws_demo.broker.Broker`; the other,
:class:`~trio_ws_demo.broker.LocalBroker`, is a single process): every message
into a room comes through :meth:`RedisBackplane.send`, :meth:`~RedisBackplane.send_to`
or :meth:`~RedisBackplane.publish`, and what is not for Redis (the link is down,
the room not followed yet) goes to its local broker.

Each room is a :class:`~trio_ws_demo.backplane.feeds.RoomFeed`, an explicit state
machine (LOCAL → LOADING → FOLLOWED → LOCAL): only a FOLLOWED room relays to
Redis, and it gets the shared epoch in the same step that makes it FOLLOWED.

How a message travels: a client's message goes into a bounded outbound queue
(:meth:`RedisBackplane.send` never awaits). One writer task sends what has
queued up as one pipeline of ``FCALL trio_ws_demo_publish`` (an ``XADD`` under
the stream's current epoch, done in Redis so that it is atomic); each entry
carries this process's writer id and a sequence number. One reader task
``XREAD``s every followed room from the last entry it read, and publishes each
entry into the local :class:`~trio_ws_demo.rooms.Room` with its offset
(:meth:`~trio_ws_demo.rooms.Room.deliver`), where it
is encoded once per form for this process's clients. So a sender sees its own
message when every other process does, in the room's one order.

Faults, and what each does:

- **The link is lost** (an error, or no answer to a PING within 1.5 s, checked
  every 0.5 s: detection within 2 s): every room goes LOCAL with a local epoch;
  v1 clients get ``{"type": "backplane", "up": false}``. What was still queued
  for Redis is delivered here, once. When the link is back, each room is loaded
  again and reading resumes **from the last entry it read**, so what other
  processes committed meanwhile is delivered after ``up: true``. A queued
  message that Redis had in fact committed is recognised by its writer id and
  sequence: it is kept in history at its shared offset but not sent again.
- **Redis refuses a message** (OOM, READONLY, NOPERM…): it is delivered
  nowhere, counted (``backplane_refused_total``), logged at WARNING, and a v1
  sender gets ``{"type": "error", ...}``; ``/healthz`` says degraded (503) for
  10 s after a refusal. The link stays up: a command error is not a lost link.
- **A room fails to load**: it stays LOCAL, the load is retried (0.5 s to 10 s
  backoff), one WARNING; ``/healthz`` says degraded while any room is not followed.
- **The stream is deleted** (or emptied): the next write starts a new epoch,
  and readers switch to it at its marker entry (``up: true, recovered: false``).
- **Redis forgot entries** (a restart from a snapshot, a lagging replica
  promoted): this process remembers the highest ID it read or wrote in each
  room (:meth:`RedisBackplane._saw`) and gives it to every write; the Redis
  function starts a new epoch if the stream ends below it, and so does a room
  loaded after a reconnect (``trio_ws_demo_fence``). No offset names two messages.
- **A client joined during an outage**: a message delivered here unconfirmed is
  marked with who had it (:data:`~.outbound.Mark`); when Redis's copy is read
  back it goes to the clients that joined since and were not replayed it.
- **A malformed entry**: skipped and counted, never fatal.

Nothing but a publish writes a room's stream (a join writes nothing), each
publish refreshes its TTL (``--stream-ttl``), and it holds at most
``--stream-bytes``; reads ask for about :data:`READ_BYTES` at a time.

coredis runs natively under Trio (through anyio); its retry policy is off, so a
timed-out write is never sent twice by coredis itself.

Upstream notes (coredis 6.9): a blocking command's reply counts against
``stream_timeout`` too, so ``XREAD BLOCK`` here stays below it; coredis logs
every failed reconnect at ERROR with a traceback (the CLI quiets its logger
unless ``--log-level debug``); and a connection that is lost leaves its three
anyio memory streams (created in ``BaseConnection.__init__``) unclosed, which
shows as ``ResourceWarning: Unclosed <MemoryObject...>`` at garbage collection.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import warnings
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

import trio

from ..broker import DEFAULT_STREAM_BYTES, DEFAULT_STREAM_TTL, Backfill, LocalBroker, OnLanded
from ..budget import Holding, MemoryBudget
from ..coalesce import coalescing
from ..errors import BackplaneUnavailable
from ..hub import Subscriber
from ..idempotency import DEFAULT_IDEMPOTENCY_WINDOW
from ..redact import redact_url
from ..rooms import Kept, Room, Rooms
from ..stats import BackplaneStatistics
from .faults import LinkLost, describe, is_link_error, lost_on_error
from .feeds import FOLLOWED, LOADING, LOCAL, RoomFeed
from .members import SharedPresence
from .outbound import Outbound, Pending, Receipt
from .sentinel_url import is_sentinel_url, parse_sentinel_url
from .streams import (
    FENCE_FUNCTION,
    LIBRARY,
    LIBRARY_NAME,
    PUBLISH_FUNCTION,
    MalformedEntry,
    StreamId,
    decode_entry,
    entry_fields,
    format_id,
    idempotency_key,
    messages_in,
    parse_id,
    room_of_key,
    stream_key,
    text,
    wake_key,
)

if TYPE_CHECKING:
    import coredis

__all__ = [
    "BACKFILL_BYTES",
    "RedisBackplane",
]

logger = logging.getLogger("trio_ws_demo.backplane")

DEFAULT_OUTBOUND_LIMIT = 10_000
#: A stream keeps at least this many entries (more with --history), so that a
#: process that falls behind for a moment, or a client resuming from further
#: back than memory reaches, can still read what it missed.
MIN_STREAM_LENGTH = 1_000
#: At most this many bytes of messages are read from Redis for one resuming
#: client (beyond it the resume is ``recovered: false``); and at most this many
#: for all the resuming clients of a process at once (a resume that would pass
#: it is ``recovered: false`` too).
BACKFILL_BYTES = 16 * 1024 * 1024
#: About this many bytes of messages are asked for in one read from Redis (a
#: read of every followed room, or one page of a room's history).
READ_BYTES = 8 * 1024 * 1024
#: The epoch of a room whose stream does not exist yet: nothing to miss, and the
#: same on every process. Its first publish starts the stream's real epoch.
UNBORN = 0
_BATCH = 1_000  # writes per pipeline, at most entries per XREAD
_PAGE = 256  # at most entries per page of a room's history
_WAKE_TTL_MS = 60_000  # a wake stream outlives its reader by at most this
_BLOCK_MS = 500  # below stream_timeout, which also bounds a blocking read
_BACKOFF_FIRST, _BACKOFF_MAX = 0.5, 10.0
_REFUSALS_SHOWN = 10.0  # seconds /healthz says degraded after Redis refused a message


class RedisBackplane:
    """Connects a server's :class:`Rooms` to one Redis shared with other processes:
    a :class:`~trio_ws_demo.broker.Broker`.

    Give its :meth:`forget` to the rooms as their ``on_freed``.

    Run :meth:`run` in a nursery (``await nursery.start(backplane.run)``): it
    connects, reports started, and keeps the link up until cancelled.
    """

    def __init__(
        self,
        url: str,
        rooms: Rooms,
        *,
        optional: bool = False,
        history: int = 0,
        history_bytes: int = 1024 * 1024,
        outbound_limit: int = DEFAULT_OUTBOUND_LIMIT,
        timeout: float = 2.0,
        presence_ttl: float = 39.0,
        stream_bytes: int = DEFAULT_STREAM_BYTES,
        stream_ttl: float = DEFAULT_STREAM_TTL,
        memory: MemoryBudget | None = None,
        redis_wait: int = 0,
        idempotency_window: float = DEFAULT_IDEMPOTENCY_WINDOW,
    ) -> None:
        self.url = url
        self.shown_url = redact_url(url)
        self._rooms = rooms
        self._optional = optional
        self._history = history
        self._history_bytes = history_bytes
        self._stream_length = max(history, MIN_STREAM_LENGTH)
        self._stream_bytes = max(stream_bytes, history_bytes)
        self._stream_ttl_ms = round(stream_ttl * 1000)
        self._stream_ttl = stream_ttl
        self._redis_wait = redis_wait
        self._idempotency_ms = round(idempotency_window * 1000)
        """Replicas that must have a published message before its publisher is told."""
        self._seen: OrderedDict[str, StreamId] = OrderedDict()
        """The highest entry ID this process has read or written in each room
        (least recently used first; at most ``2 * max_rooms``). Given to every
        write: Redis starts a new epoch if the stream is below it (the fence)."""
        self._written: dict[str, float] = {}
        """Rooms without clients here that this process wrote to, and when last:
        their streams are alive for ``stream_ttl``, and count against ``max_rooms``."""
        self._read_count = _BATCH
        self._timeout = timeout
        self._outbound = Outbound(outbound_limit)
        self._wake_reader: trio.Event | None = None
        self._wake_loader = trio.Event()
        self._feeds: dict[str, RoomFeed] = {}
        self._loading: dict[str, trio.Event] = {}
        """Rooms being loaded now, and the event set when that ends."""
        self._link: coredis.Redis[bytes] | None = None
        self._generation = 0
        """Counts links: a load that began on an earlier link is not applied."""
        self.writer_id = secrets.token_hex(6).encode()
        self.presence = SharedPresence(rooms, self.writer_id.decode(), presence_ttl)
        """Who is in each room on the other processes (see :mod:`.shared_presence`)."""
        self.up = False
        self._warned_down = False
        self._started = False
        self._ever_up = False
        self._delay = _BACKOFF_FIRST
        self._last_refusal: float | None = None
        self.reconnects = 0
        self.sent = 0
        self.received = 0
        self.dropped = 0
        self.skipped = 0
        self.refused = 0
        self.own_recognised = 0
        self.fenced = 0
        """Times Redis was found to have forgotten entries read here (a new epoch began)."""
        self.master: str | None = None
        """The address of the Redis last reached ("HOST:PORT"; with a sentinel
        URL, the master the sentinels named)."""
        self._local = LocalBroker(rooms, history=history, idempotency_window=idempotency_window)
        """Where a message goes while it cannot go to Redis: this process only."""
        self._backfills = MemoryBudget(BACKFILL_BYTES)
        """The bytes of resume gaps being read now, by every resuming client."""
        self._memory = memory
        """The server's memory budget, charged too while a gap is read (if given)."""

    # -- the broker: where messages go (a plain def never awaits) -------------------

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
        """A client's message: to Redis if the room is followed (0 clients took it
        yet: it comes back from the reader), else delivered here at once."""
        feed = self._feeds.get(room.name)
        if self.up and feed is not None and feed.state is FOLLOWED and feed.room is room:
            quiet = sender is not None and room.is_quiet(sender)
            self._queue(room.name, message, sender, author, key, landed, quiet)
            return 0
        return self._local.send(room, message, frame, sender, author, key, landed)

    def send_to(self, room_name: str, message: str | bytes, author: str = "server") -> int:
        """The application's message: as :meth:`send` if the room is here, else
        to Redis for the other processes' clients (and history); locally while
        the link is down."""
        existing = self._rooms.get(room_name)
        if existing is not None:
            return self.send(existing, message, author=author)
        if self._relay_to(room_name, message, author):
            return 0
        return self._local.send_to(room_name, message, author)

    def _relay_to(self, room: str, message: str | bytes, author: str) -> bool:
        """Queue *message* for room *room*, which has no clients here; False if
        the link is down. A room past ``max_rooms`` is taken and dropped."""
        if not self.up:
            return False
        if not self._may_write_to(room):
            self.dropped += 1
            return True
        return self._queue(room, message, None, author)

    def _may_write_to(self, room: str) -> bool:
        """Whether this process may make (or keep alive) the stream of *room*,
        which has no clients here: rooms here and streams it wrote to within
        ``stream_ttl`` count against ``max_rooms`` together."""
        now = trio.current_time()
        written = self._written
        if room not in written and len(written) + len(self._rooms) >= self._rooms.max_rooms:
            if self._stream_ttl > 0:
                for name in [n for n, at in written.items() if now - at >= self._stream_ttl]:
                    del written[name]
            if len(written) + len(self._rooms) >= self._rooms.max_rooms:
                return False
        written[room] = now
        return True

    def _queue(
        self,
        room: str,
        message: str | bytes,
        sender: Subscriber[bytes] | None,
        author: str,
        key: str | None = None,
        landed: OnLanded | None = None,
        quiet: bool = False,
    ) -> bool:
        if not self._outbound.has_room_for(1):
            self.dropped += 1
            return True  # taken, and lost: counted
        self._outbound.add(room, message, sender, None, author, key, landed, quiet)
        return True

    async def publish(
        self,
        room: str,
        messages: list[str | bytes],
        author: str = "api",
        key: str | None = None,
    ) -> tuple[str, int]:
        """Publish *messages* into *room* through Redis and wait until Redis took
        them: the epoch and offset of the last. Raises :class:`BackplaneUnavailable`
        (with the reason) if the link is down, the queue is full, Redis refused
        one, or no answer came in time; a message Redis did take is delivered
        to every process regardless (so a retry after a timeout may deliver twice)."""
        if not self.up:
            raise BackplaneUnavailable("Redis is unavailable")
        if not self._outbound.has_room_for(len(messages)):
            raise BackplaneUnavailable("too many messages are waiting for Redis")
        if self._rooms.get(room) is None and not self._may_write_to(room):
            raise BackplaneUnavailable("too many rooms")
        receipt = Receipt(len(messages))
        for index, message in enumerate(messages):
            # Each message of a keyed batch is keyed: a retry writes none again.
            each = None if key is None else f"{key}:{index}"
            self._outbound.add(room, message, None, receipt, author, each)
        with trio.move_on_after(self._timeout * 2):
            await receipt.done.wait()
        if receipt.error is not None or receipt.last_id is None:
            raise BackplaneUnavailable(receipt.error or "no answer from Redis in time")
        return str(receipt.last_id[0]), receipt.last_id[1]

    def forget(self, room: Room) -> None:
        """*room* was freed (the rooms' ``on_freed``): stop following it."""
        feed = self._feeds.get(room.name)
        if feed is not None and feed.room is room:
            del self._feeds[room.name]

    # -- what the server awaits -------------------------------------------------

    async def follow(self, name: str) -> None:
        """Before a client joins room *name*: make sure this process follows its
        stream (shared history, epoch and offset). Raises nothing but Cancelled:
        a room that cannot be loaded stays local, and is retried when its
        backoff is over (by the loader, or by the first join after it), not by
        every client that joins meanwhile (finding R14)."""
        if not self.up or self._link is None or not self._rooms.has_room_for(name):
            return  # the server refuses a room past the limit itself
        feed = self._feed(self._rooms.room(name))
        if feed.state is FOLLOWED:
            return
        if feed.state is LOCAL and feed.retry_at > trio.current_time():
            return  # its last load failed: local until the retry is due
        loading = self._loading.get(name)
        if loading is not None:  # another client of this room is loading it
            with trio.move_on_after(self._timeout):
                await loading.wait()
            return
        await self._load(feed)

    async def backfill(self, name: str, since: tuple[int, str]) -> Backfill | None:
        """For a client resuming from *since* further back than the room's history:
        the messages in between, read from the stream (None if not needed or
        not possible). Raises nothing but Cancelled."""
        offset, epoch = since
        feed, room, link = self._feeds.get(name), self._rooms.get(name), self._link
        if feed is None or room is None or link is None or feed.state is not FOLLOWED:
            return None
        oldest = room.oldest_offset
        if epoch != room.epoch or not 0 <= offset < oldest - 1:
            return None
        if oldest - 1 - offset > self._stream_length:
            return None
        budgets = [self._backfills] if self._memory is None else [self._backfills, self._memory]
        held = Holding(*budgets)
        try:
            with trio.fail_after(self._timeout):
                return await self._read_gap(link, name, int(epoch), offset, held)
        except Exception as exc:
            logger.debug("backplane: could not read the resume gap of %r: %s", name, exc)
            return None
        finally:
            held.release()

    async def _read_gap(
        self,
        link: coredis.Redis[bytes],
        name: str,
        epoch: int,
        offset: int,
        held: Holding,
    ) -> Backfill | None:
        """The messages of *epoch* after *offset*, up to the stream's end, read
        oldest first in pages sized from the average message so far (the
        first page is one entry, and each is at most four times the one
        before): None as soon as they pass ``BACKFILL_BYTES``, or if what the
        next page should need does not fit in *held*'s budgets.

        To the end, not to *oldest*: while the pages are read (and until the
        client joins), the room's history moves on, and a backfill that stops
        where the history began when it started would no longer meet it (the
        join then says ``recovered: false``). What overlaps the history is
        left out by the join."""
        key, end = stream_key(name), f"({epoch + 1}-0"  # the whole epoch, exclusive
        start = f"{epoch}-{offset + 1}"
        messages: Backfill = []
        size = 0
        count = 1
        while True:
            expected = max(count * (size // len(messages)) if messages else 1, 1)
            if not held.take(expected):
                return None
            page = await link.xrange(key, start=start, end=end, count=count)
            found, page_size, skipped = messages_in(page, epoch)
            self.skipped += skipped
            if page_size > expected:
                held.force(page_size - expected)  # here already: counted
            messages.extend(found)
            size += page_size
            if size > BACKFILL_BYTES:
                return None
            if len(page) < count:  # the stream's end
                return messages
            start = "(" + text(page[-1].identifier)  # exclusive: after the page
            average = max(size // max(len(messages), 1), 1)
            fit = min(READ_BYTES, BACKFILL_BYTES - size) // average
            count = min(_PAGE, 4 * count, max(1, fit))

    def statistics(self) -> BackplaneStatistics:
        now = trio.current_time()
        return BackplaneStatistics(
            up=self.up,
            reconnects=self.reconnects,
            sent=self.sent,
            received=self.received,
            dropped=self.dropped,
            queued=len(self._outbound),
            skipped=self.skipped,
            refused=self.refused,
            not_followed=self._not_followed() if self.up else 0,
            refusing=self._last_refusal is not None and now - self._last_refusal < _REFUSALS_SHOWN,
            own_recognised=self.own_recognised,
            master=self.master,
        )

    def _not_followed(self) -> int:
        return sum(
            1
            for room in self._rooms.rooms()
            if room.clients
            and ((feed := self._feeds.get(room.name)) is None or feed.state is not FOLLOWED)
        )

    # -- shutdown -----------------------------------------------------------------

    async def flush(self) -> None:
        """At shutdown, before the clients leave their rooms: what is queued for
        Redis is written, and read back into this process's rooms, within the
        link's timeout; what is not written by then is delivered here, once (as
        when the link is lost). Cancel :meth:`run` after this.

        Before (finding R13) the backplane was cancelled first, and whatever
        still waited for Redis reached no one on this process."""
        with trio.move_on_after(self._timeout):
            try:
                await self._read_back()
            except Exception as exc:  # the link's fault: what is left is delivered here
                logger.debug("backplane: flushing at shutdown: %s", describe(exc))
        if self._outbound or self._outbound.in_flight:
            self._go_down("shutting down before Redis took every message")

    async def _read_back(self) -> None:
        await self._outbound.idle()
        link = self._link
        if not self.up or link is None:
            return
        # The streams' ends now hold every write Redis confirmed: read up to them
        # here rather than wait for the reader (what both read is delivered once:
        # a feed takes only entries past its last).
        for feed in list(self._feeds.values()):
            while feed.state is FOLLOWED and feed.room.clients and feed.last_id is not None:
                last = feed.last_id
                entries = await link.xrange(
                    stream_key(feed.name), start=format_id(last), end="+", count=_BATCH
                )
                with coalescing(many=len(entries) > 1):
                    self._deliver(feed.name, entries)
                if len(entries) < _BATCH or feed.last_id == last:
                    break

    # -- the link ---------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep the link to Redis up until cancelled.

        Raises :class:`BackplaneUnavailable` if Redis cannot be reached at start,
        unless *optional*: then it starts in local mode and keeps trying.
        """
        while True:
            why = "the connection ended"
            try:
                await self._serve_link(task_status)
            except* LinkLost as group:
                why = str(group.exceptions[0])
            self._link = None
            if not self._started:
                if not self._optional:
                    raise BackplaneUnavailable(
                        f"cannot use Redis at {self.shown_url}: {why}; start redis-server "
                        "(7.0 or later; or check --redis), or pass --redis-optional to "
                        "start without it"
                    )
                self._started = True
                task_status.started()
            self._go_down(why)
            await trio.sleep(self._delay)
            self._delay = min(self._delay * 2, _BACKOFF_MAX)

    async def _serve_link(self, task_status: trio.TaskStatus[None]) -> None:
        """Connect, then watch, write, read and load rooms until the link fails
        (:class:`LinkLost`)."""
        async with lost_on_error(), self._connect() as link:
            with trio.fail_after(self._timeout):
                await link.ping()
                await self._load_library(link)
            self._note_master(link)
            self._link = link
            self._generation += 1
            self._go_up()
            if not self._started:
                self._started = True
                task_status.started()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._heartbeat, link)
                nursery.start_soon(self._write, link)
                nursery.start_soon(self._read, link)
                nursery.start_soon(self._load_rooms)
                nursery.start_soon(self.presence.run, link)

    async def _load_library(self, link: coredis.Redis[bytes]) -> None:
        """Load our Redis functions; one loaded earlier will do when Redis refuses
        writes (at ``maxmemory``, OOM), so that a server can start then too."""
        from coredis.exceptions import ResponseError

        try:
            await link.function_load(LIBRARY, replace=True)
        except ResponseError:
            if not await link.function_list(libraryname=LIBRARY_NAME):
                raise

    @contextlib.asynccontextmanager
    async def _connect(self) -> AsyncIterator[coredis.Redis[bytes]]:
        """A client of the Redis in *url*; for a ``redis+sentinel://`` URL, of the
        master the sentinels name now (asked again on every reconnect, so the
        link follows a failover; a master that reports another role is refused)."""
        try:
            import coredis
            from coredis.connection import TCPLocation
            from coredis.retry import NoRetryPolicy
        except ImportError:  # pragma: no cover - a dependency of the package
            raise BackplaneUnavailable("--redis needs the coredis package") from None
        options: dict[str, Any] = {
            "stream_timeout": self._timeout,
            "connect_timeout": self._timeout,
            "client_name": "trio-ws-demo",
        }
        if not is_sentinel_url(self.url):
            try:
                link: coredis.Redis[bytes] = coredis.Redis.from_url(
                    self.url, decode_responses=False, retry_policy=NoRetryPolicy(), **options
                )
            except ValueError as exc:
                raise BackplaneUnavailable(f"invalid --redis URL {self.shown_url}: {exc}") from None
            async with link:
                yield link
            return
        where = parse_sentinel_url(self.url)
        sentinel = coredis.Sentinel(
            [TCPLocation(host, port) for host, port in where.sentinels],
            sentinel_kwargs=dict(options),  # the sentinels get no password
            decode_responses=False,
            retry_policy=NoRetryPolicy(),
            db=where.db,
            username=where.username,
            password=where.password,
            **options,
        )
        async with sentinel, sentinel.primary_for(where.service) as link:
            yield link

    def _note_master(self, link: coredis.Redis[bytes]) -> None:
        """Remember which Redis the link reached (what /healthz and /metrics show)."""
        location = getattr(link.connection_pool, "location", None)
        master = str(location) if location is not None else None
        if master != self.master and master is not None:
            if self.master is not None:
                logger.info("backplane: the Redis master is now %s (was %s)", master, self.master)
            self.master = master

    async def _heartbeat(self, link: coredis.Redis[bytes]) -> None:
        """Judge the link lost when Redis has not answered a PING (sent every
        ``timeout / 4``) for ``timeout * 3/4``: within 1.5 s of a freeze at the
        default 2 s. A blocking XREAD cannot tell, it is blocked anyway.

        The rooms go local at that moment, before the link's tasks are torn down
        (coredis may take its own time to give up a connection attempt)."""
        limit = self._timeout * 3 / 4
        watch = trio.CancelScope(deadline=trio.current_time() + limit)

        async def ping() -> None:
            while True:
                await link.ping()
                watch.deadline = trio.current_time() + limit
                await trio.sleep(self._timeout / 4)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ping)
            with watch:
                await trio.sleep_forever()
            self._go_down("no answer to PING in time")
            raise trio.TooSlowError

    def _go_up(self) -> None:
        first = not self._ever_up
        self.up = self._ever_up = True
        self._warned_down = False
        self._delay = _BACKOFF_FIRST
        if first:
            logger.info("backplane: connected to Redis at %s", self.shown_url)
        else:
            self.reconnects += 1
            logger.info("backplane: Redis at %s is back", self.shown_url)
        for feed in self._feeds.values():
            feed.retry_at = 0.0  # every room is loaded again at once
        self._wake_loader.set()

    def _go_down(self, why: str) -> None:
        was_up, self.up = self.up, False
        self._wake_reader = None
        for feed in list(self._feeds.values()):
            feed.link_lost()
        if was_up:
            logger.warning("backplane: lost Redis at %s (%s); serving locally", self.shown_url, why)
        elif not self._warned_down:
            logger.warning(
                "backplane: Redis at %s unreachable (%s); serving locally and retrying",
                self.shown_url,
                why,
            )
        self._warned_down = True
        # What Redis never confirmed is delivered here, once; if Redis did commit
        # it, the reader recognises it by writer id and sequence, and does not
        # send it again (see _deliver).
        for item in self._outbound.unsent():
            if item.receipt is not None:  # its publisher is told, and may retry
                item.receipt.settle(error=f"lost Redis ({why})")
                continue
            local = self._rooms.get(item.room)
            if local is not None:
                local.deliver(item.message, sender=item.author, origin=item.sender)
                # Who has it: everyone here now. A client that joins later and
                # is not replayed it gets it when Redis's copy is read (_deliver).
                self._outbound.delivered_here(item.seq, (local.incarnation, local.deliveries))

    # -- rooms: LOCAL -> LOADING -> FOLLOWED -----------------------------------------

    def _feed(self, room: Room) -> RoomFeed:
        feed = self._feeds.get(room.name)
        if feed is None or feed.room is not room:
            feed = self._feeds[room.name] = RoomFeed(room)
        return feed

    async def _load_rooms(self) -> None:
        """Load every room that is not followed: new ones, all of them after a
        reconnect, and failed ones when their retry is due."""
        while True:
            self._wake_loader = wake = trio.Event()
            now = trio.current_time()
            next_due = now + 1.0  # rooms made without follow() are found within 1 s
            for room in self._rooms.rooms():
                feed = self._feed(room)
                if feed.state is not LOCAL or room.name in self._loading:
                    continue
                if feed.retry_at > now:
                    next_due = min(next_due, feed.retry_at)
                    continue
                await self._load(feed)
            with trio.move_on_at(next_due):
                await wake.wait()

    async def _load(self, feed: RoomFeed) -> None:
        """LOADING, then FOLLOWED, or LOCAL with a retry; raises nothing but Cancelled."""
        link, generation, name = self._link, self._generation, feed.name
        if link is None:
            return
        feed.begin_load()
        self._loading[name] = done = trio.Event()
        try:
            with trio.fail_after(self._timeout):
                state = await self._read_state(link, feed)
        except Exception as exc:
            if feed.state is LOADING:
                delay = feed.failed(trio.current_time(), _BACKOFF_FIRST, _BACKOFF_MAX)
                logger.warning(
                    "backplane: could not load room %r (%s); serving it locally, retry in %.1f s",
                    name,
                    describe(exc),
                    delay,
                    exc_info=not is_link_error(exc),  # a traceback only for a bug
                )
                self._wake_loader.set()
        else:
            if (
                feed.state is LOADING
                and generation == self._generation
                and self._feeds.get(name) is feed
            ):
                feed.loaded(*state)
                if self._wake_reader is not None:
                    self._wake_reader.set()
        finally:
            if feed.state is LOADING:  # cancelled, or the link moved on
                feed.link_lost()
            del self._loading[name]
            done.set()

    async def _read_state(
        self, link: coredis.Redis[bytes], feed: RoomFeed
    ) -> tuple[int, StreamId, list[Kept], bool]:
        """The stream's epoch, where to read from, the history before it, and
        whether that continues where this process left off.

        Writes nothing, unless the stream ends below an entry this process has
        read: Redis forgot it (a snapshot restart, a lagging replica promoted),
        and the fence starts a new epoch before anything else is written."""
        name = feed.name
        key = stream_key(name)
        last = feed.last_id
        newest = await link.xrevrange(key, count=1)
        if not newest:  # no stream yet, or it expired or was deleted
            return UNBORN, (UNBORN, 0), [], last == (UNBORN, 0)
        top = parse_id(newest[0].identifier)
        seen = self._seen.get(name)
        if seen is not None and top < seen:
            await link.fcall(FENCE_FUNCTION, keys=[key], args=[format_id(seen)])
            self.fenced += 1
            logger.warning(
                "backplane: Redis has forgotten messages of room %r (its stream ends at "
                "%s, this process read %s): a new epoch begins, and resumes from before it "
                "are told recovered: false",
                name,
                format_id(top),
                format_id(seen),
            )
            newest = await link.xrevrange(key, count=1)
            top = parse_id(newest[0].identifier)
        self._saw(name, top)
        if last is not None and last[0] == top[0] and last <= top:
            upto = await link.xrevrange(key, end=format_id(last), start="-", count=1)
            if upto and parse_id(upto[0].identifier) == last:
                return top[0], last, await self._history_upto(link, key, last), True
        return top[0], top, await self._history_upto(link, key, top), False

    async def _history_upto(
        self, link: coredis.Redis[bytes], key: str, end: StreamId
    ) -> list[Kept]:
        """The room's history: the messages of *end*'s epoch up to *end*, at
        most ``history`` of them and about ``history_bytes``, read newest first
        in pages sized to what is left of the byte bound."""
        epoch = end[0]
        kept: list[Kept] = []
        size = 0
        cursor = format_id(end)
        count = min(16, self._history)
        while count > 0:
            page = await link.xrevrange(key, end=cursor, start=f"{epoch}-0", count=count)
            messages, page_size, skipped = messages_in(page, epoch)
            self.skipped += skipped
            kept.extend(reversed(messages))
            size += page_size
            if len(page) < count or size >= self._history_bytes:
                break
            cursor = "(" + text(page[-1].identifier)  # exclusive: before the page
            left = self._history - len(kept)
            average = max(size // max(len(kept), 1), 1)
            count = min(_PAGE, left, max(1, (self._history_bytes - size) // average))
        kept.reverse()
        return kept

    def _saw(self, room: str, identifier: StreamId) -> None:
        """Remember the highest entry ID of *room* read or written here (for the fence)."""
        seen = self._seen
        if room in seen:
            seen.move_to_end(room)
            if identifier <= seen[room]:
                return
        seen[room] = identifier
        while len(seen) > 2 * self._rooms.max_rooms:
            seen.popitem(last=False)

    # -- writing and reading ------------------------------------------------------

    async def _write(self, link: coredis.Redis[bytes]) -> None:
        from coredis.exceptions import ResponseError

        outbound = self._outbound
        while True:
            await outbound.wake.wait()
            outbound.wake = trio.Event()
            while outbound:
                batch = outbound.take(_BATCH)
                try:
                    # stream_timeout bounds the pipeline (a frozen Redis)
                    async with link.pipeline(transaction=False, raise_on_error=False) as pipe:
                        requests = [
                            pipe.fcall(
                                PUBLISH_FUNCTION,
                                keys=self._keys(item),
                                args=[
                                    self._stream_length,
                                    self._stream_bytes,
                                    self._stream_ttl_ms,
                                    format_id(self._seen.get(item.room, (UNBORN, 0))),
                                    self._idempotency_ms,
                                    *self._fields(item),
                                ],
                            )
                            for item in batch
                        ]
                except BaseException:
                    # Not confirmed: delivered locally when the link goes down
                    # (unless the heartbeat already judged it lost and did so).
                    if outbound.in_flight is batch:
                        outbound.put_back(batch)
                    outbound.in_flight = []
                    raise
                outbound.in_flight = []
                confirmed: list[tuple[Receipt, StreamId]] = []
                for index, (item, request) in enumerate(zip(batch, requests, strict=True)):
                    try:
                        identifier = await request
                    except ResponseError as exc:
                        if "function not found" in str(exc).lower():  # FUNCTION FLUSH
                            outbound.put_back(batch[index:])
                            raise
                        self._refused(item, exc)
                    else:
                        self.sent += 1
                        written = parse_id(text(identifier))
                        self._saw(item.room, written)
                        if item.landed is not None:
                            item.landed(str(written[0]), written[1])
                        if item.receipt is not None:
                            confirmed.append((item.receipt, written))
                await self._confirm(link, confirmed)

    async def _confirm(
        self, link: coredis.Redis[bytes], confirmed: list[tuple[Receipt, StreamId]]
    ) -> None:
        """Tell publishers where their messages landed; with ``--redis-wait N``,
        only once ``WAIT`` says N replicas have them (else they are told it was
        not confirmed: the message is in the master's stream, and may be lost
        with it)."""
        if confirmed and self._redis_wait:
            with warnings.catch_warnings():
                # coredis points to ensure_replication(), which raises instead
                # of saying how many replicas have it.
                warnings.simplefilter("ignore", UserWarning)
                waiting = link.wait(self._redis_wait, int(self._timeout * 500))
            replicas = int(await waiting)  # within half the timeout: below stream_timeout
            if replicas < self._redis_wait:
                why = f"only {replicas} of {self._redis_wait} Redis replicas confirmed it in time"
                for receipt, _ in confirmed:
                    receipt.settle(error=why)
                return
        for receipt, written in confirmed:
            receipt.settle(written)

    @staticmethod
    def _keys(item: Pending) -> list[str]:
        if item.key is None:
            return [stream_key(item.room)]
        return [stream_key(item.room), idempotency_key(item.room, item.key)]

    def _fields(self, item: Pending) -> list[str | bytes | int]:
        return entry_fields(item.message, item.at, self.writer_id, item.seq, item.author)

    def _refused(self, item: Pending, exc: Exception) -> None:
        """Redis refused to take a message: it goes nowhere (never to some
        processes and not others); the sender is told, if it can be."""
        self.refused += 1
        why = str(exc).rpartition("pipeline caused error: ")[2] or type(exc).__name__
        if item.receipt is not None:
            item.receipt.settle(error=f"Redis said {why}")
        now = trio.current_time()
        if self._last_refusal is None or now - self._last_refusal >= _REFUSALS_SHOWN:
            logger.warning(
                "backplane: Redis refused a message for room %r (%s); not delivered",
                item.room,
                why,
            )
        self._last_refusal = now
        room = self._rooms.get(item.room)
        if room is not None and item.sender is not None:
            room.tell(item.sender, f"not delivered: Redis said {why}")

    async def _read(self, link: coredis.Redis[bytes]) -> None:
        wake = wake_key(secrets.token_hex(6))
        last_wake: Any = b"0-0"
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._poke, link, wake)
                while True:
                    streams: dict[str | bytes, Any] = {wake: last_wake}
                    for name, feed in self._feeds.items():
                        if feed.state is FOLLOWED and feed.last_id is not None:
                            streams[stream_key(name)] = format_id(feed.last_id)
                    result = await link.xread(streams, count=self._read_count, block=_BLOCK_MS)
                    largest = 1024
                    # One step per read: each client here gets what this read
                    # holds for it in one write (see coalesce); the wake
                    # stream's entries are no messages.
                    entries_read = sum(
                        len(e) for k, e in (result or {}).items() if k.decode() != wake
                    )
                    with coalescing(many=entries_read > 1):
                        for key, entries in (result or {}).items():
                            name = key.decode()
                            if name == wake:
                                last_wake = entries[-1].identifier
                                continue
                            largest = max(largest, self._deliver(room_of_key(name), entries))
                    # Bytes, not entries, bound a read: fewer entries when they are large.
                    self._read_count = max(4, min(_BATCH, READ_BYTES // largest))
        finally:
            with (
                trio.CancelScope(shield=True),
                trio.move_on_after(self._timeout),
                contextlib.suppress(Exception),
            ):
                await link.delete([wake])

    async def _poke(self, link: coredis.Redis[bytes], key: str) -> None:
        """When a room is followed while XREAD blocks, add to this process's wake
        stream, so that the read returns and the next one includes the room."""
        from coredis.exceptions import ResponseError

        while True:
            self._wake_reader = wake = trio.Event()
            await wake.wait()
            try:
                await link.xadd(key, {"w": b"1"}, trim_strategy=_tokens().MAXLEN, threshold=1)
                await link.pexpire(key, _WAKE_TTL_MS)  # gone soon if this process dies
            except ResponseError as exc:  # OOM: the next read (within 0.5 s) has the room
                logger.debug("backplane: could not wake the reader: %s", exc)

    def _deliver(self, name: str, entries: Iterable[Any]) -> int:
        """Publish the entries read from room *name*'s stream here; returns the
        size of the largest message among them (it sizes the next read)."""
        feed = self._feeds.get(name)
        if feed is None:
            return 0
        room = feed.room
        largest = 0
        identifier: StreamId | None = None
        for entry in entries:
            identifier = parse_id(entry.identifier)
            if not feed.accepts(identifier):  # read before this room was (re)loaded
                continue
            last = feed.last_id
            if last is not None and identifier[0] != last[0]:
                # Nothing was missed if the old epoch had no message: a new room's
                # first publish (its stream is born), not a restart.
                feed.restarted(identifier[0], recovered=last == (UNBORN, 0))
            feed.last_id = identifier
            try:
                parsed = decode_entry(entry.field_values)
            except MalformedEntry:
                self.skipped += 1
                logger.warning("backplane: skipped a malformed entry in room %r", name)
                continue
            if parsed is None:
                continue  # an epoch's marker
            message, at, writer, seq, author = parsed
            largest = max(largest, len(message))
            mark = self._outbound.recognise(seq) if writer == self.writer_id else None
            if mark is not None:
                # Delivered here while Redis had not confirmed it: keep it at its
                # shared offset; send it only to those who joined since and were
                # not replayed it (all of them, if the room was made again).
                incarnation, delivery = mark
                after = delivery if incarnation == room.incarnation else 0
                room.record(identifier[1], at, message, after=after, sender=author)
                self.own_recognised += 1
                continue
            origin = self._outbound.origin(seq) if writer == self.writer_id else None
            room.deliver(message, offset=identifier[1], at=at, sender=author, origin=origin)
            self.received += 1
        if identifier is not None:
            self._saw(name, identifier)
        return largest


def _tokens() -> Any:
    """coredis's command tokens (imported on first use: without --redis, the
    server never loads coredis)."""
    from coredis import PureToken

    return PureToken
