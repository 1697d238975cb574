"""The Redis backplane: several server processes share rooms, history and offsets.

Why Redis Streams, not pub/sub: one stream per room (``trio-ws-demo:room:NAME``)
gives everything the rooms need from one command set. ``XADD key 0-* ...``
makes Redis number a room's messages 1, 2, 3, … (entry IDs ``0-1``, ``0-2``, …),
so an offset means the same message on every process; a stream has one order,
which every process reads with ``XREAD``; and the stream *is* the history
(``MAXLEN ~`` trims it), so a client that resumes on another process, after its
own process died, is served from it. Pub/sub would need a second store for
history and a way to agree on offsets.

How a message travels: a client's message goes into a bounded outbound queue
(:meth:`RedisBackplane.relay` never awaits). One writer task sends what has
queued up as one pipeline of ``XADD``; whatever arrives while a pipeline is in
flight makes the next one. One reader task ``XREAD``s every room this process
has clients in, many entries per call, and publishes each entry into the local
:class:`~trio_ws_demo.rooms.Room` with Redis's offset, where it is encoded once
per form for this process's clients. So a sender sees its own message when every
other process does, in the room's one order.

When the link is lost (an error, or no answer within ``stream_timeout``), the
rooms go local: messages are delivered at once to this process's clients,
including those still queued for Redis, and nothing is sent twice (after the
link is back, reading resumes from the stream's end at that moment). v1 clients
get a ``{"type": "backplane", "up": false, ...}`` frame with the local epoch
(the chat page shows a notice), and ``up: true`` with the shared epoch and
offset once the link is back. One WARNING when the link is lost, one INFO when
it is back; reconnects back off from 0.5 s to 10 s.

coredis runs natively under Trio (through anyio); its retry policy is off, so a
timed-out ``XADD`` is never sent twice.

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
import time
import urllib.parse
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from .rooms import Room, Rooms

if TYPE_CHECKING:
    import coredis

__all__ = [
    "BackplaneStatistics",
    "BackplaneUnavailable",
    "RedisBackplane",
    "redact_url",
]

logger = logging.getLogger(__name__)

PREFIX = "trio-ws-demo"
DEFAULT_OUTBOUND_LIMIT = 10_000
#: A stream keeps at least this many entries (more with --history), so that a
#: process that falls behind for a moment can still read what it missed.
MIN_STREAM_LENGTH = 1_000
_BATCH = 1_000  # XADDs per pipeline, entries per XREAD
_BLOCK_MS = 1_000  # below stream_timeout, which also bounds a blocking read
_BACKOFF_FIRST, _BACKOFF_MAX = 0.5, 10.0


class BackplaneUnavailable(Exception):
    """Redis could not be reached or used; ``str()`` is one line for a person."""


def redact_url(url: str) -> str:
    """*url* with its password (if any) shown as ``***``: fit for logs and errors."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class BackplaneStatistics:
    up: bool
    reconnects: int
    """Times the link came back after it was lost."""
    sent: int
    """Messages written to Redis."""
    received: int
    """Entries read from Redis and published here."""
    dropped: int
    """Messages that did not fit the outbound queue while Redis was slow."""
    queued: int
    skipped: int = 0
    """Malformed stream entries skipped (never delivered, never fatal)."""


def _stream_key(room: str) -> str:
    return f"{PREFIX}:room:{room}"


def _epoch_key(room: str) -> str:
    return f"{PREFIX}:epoch:{room}"


def _offset(identifier: bytes | str) -> int:
    """The room offset in a ``0-N`` entry ID."""
    text = identifier.decode() if isinstance(identifier, bytes) else identifier
    return int(text.rpartition("-")[2])


def _entry_message(fields: Any) -> tuple[str | bytes, float]:
    message: bytes = fields.get(b"m", b"")
    at = float(fields.get(b"t", b"0") or 0)
    if fields.get(b"b") == b"1":
        return message, at
    return message.decode("utf-8", "replace"), at


def _parse_entry(entry: Any) -> tuple[int, float, str | bytes] | None:
    """An entry's offset, time and message; None for one that is not ours (a bad
    ``t`` field, an ID not ``0-N``, fields of the wrong type): a poison entry is
    skipped, never fatal, or every process would crash on it for good."""
    try:
        message, at = _entry_message(entry.field_values)
        return _offset(entry.identifier), at, message
    except (ValueError, TypeError, AttributeError, UnicodeDecodeError):
        return None


class RedisBackplane:
    """Connects a server's :class:`Rooms` to one Redis shared with other processes.

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
        outbound_limit: int = DEFAULT_OUTBOUND_LIMIT,
        timeout: float = 2.0,
    ) -> None:
        self.url = url
        self.shown_url = redact_url(url)
        self._rooms = rooms
        self._optional = optional
        self._history = history
        self._stream_length = max(history, MIN_STREAM_LENGTH)
        self._outbound_limit = outbound_limit
        self._timeout = timeout
        self._outbound: deque[tuple[str, str | bytes, float]] = deque()
        self._wake_writer = trio.Event()
        self._wake_reader: trio.Event | None = None
        self._followed: dict[str, bytes] = {}
        """Room name -> the last entry ID read (b"0-N")."""
        self._loading: dict[str, trio.Event] = {}
        """Rooms whose shared state follow() is loading now."""
        self._link: coredis.Redis[bytes] | None = None
        self.up = False
        self._warned_down = False
        self._started = False
        self._ever_up = False
        self._delay = _BACKOFF_FIRST
        self.reconnects = 0
        self.sent = 0
        self.received = 0
        self.dropped = 0
        self.skipped = 0
        rooms.relay = self.relay
        rooms.on_freed = self._unfollow

    # -- what the rooms call (never awaits) -------------------------------------

    def relay(self, room: Room, message: str | bytes) -> bool:
        """Queue a client's message for Redis (a room's :attr:`~Room.relay`).

        False while the link is down: the room then delivers it locally.
        """
        return self.relay_to(room.name, message)

    def relay_to(self, room: str, message: str | bytes) -> bool:
        """Queue *message* for room *room* on every process; False if the link is down."""
        if not self.up:
            return False
        if len(self._outbound) >= self._outbound_limit:
            self.dropped += 1
            return True  # taken, and lost: counted
        self._outbound.append((room, message, time.time()))
        self._wake_writer.set()
        return True

    def _unfollow(self, room: Room) -> None:
        self._followed.pop(room.name, None)

    # -- what the server awaits -------------------------------------------------

    async def follow(self, name: str) -> None:
        """Before a client joins room *name*: make sure this process reads it, and
        has its shared history, epoch and offset. Local if the link is down."""
        if name in self._followed or not self.up or self._link is None:
            return
        loading = self._loading.get(name)
        if loading is not None:  # another client of this room is loading it
            await loading.wait()
            return
        self._loading[name] = loading = trio.Event()
        room = self._rooms.room(name)
        try:
            with trio.fail_after(self._timeout):
                await self._adopt(self._link, room)
        except Exception as exc:
            if not _is_link_error(exc):
                raise
            logger.debug("backplane: could not load room %r: %s", name, exc)
            return
        finally:
            del self._loading[name]
            loading.set()
        if self._wake_reader is not None:
            self._wake_reader.set()

    def statistics(self) -> BackplaneStatistics:
        return BackplaneStatistics(
            up=self.up,
            reconnects=self.reconnects,
            sent=self.sent,
            received=self.received,
            dropped=self.dropped,
            queued=len(self._outbound),
            skipped=self.skipped,
        )

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
            except* _LinkLost as group:
                why = str(group.exceptions[0])
            self._link = None
            if not self._started:
                if not self._optional:
                    raise BackplaneUnavailable(
                        f"cannot use Redis at {self.shown_url}: {why}; start redis-server "
                        "(or check --redis), or pass --redis-optional to start without it"
                    )
                self._started = True
                task_status.started()
            self._go_down(why)
            await trio.sleep(self._delay)
            self._delay = min(self._delay * 2, _BACKOFF_MAX)

    async def _serve_link(self, task_status: trio.TaskStatus[None]) -> None:
        """Connect, load the rooms, then read and write until the link fails
        (:class:`_LinkLost`)."""
        async with _lost_on_error(), self._connect() as link:
            with trio.fail_after(self._timeout):
                await link.ping()
            # Rooms made while this runs are adopted too (they could not follow()).
            while pending := [r for r in self._rooms.rooms() if r.name not in self._followed]:
                for room in pending:
                    with trio.fail_after(self._timeout):
                        await self._adopt(link, room)
            self._link = link
            self._go_up()
            if not self._started:
                self._started = True
                task_status.started()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write, link)
                nursery.start_soon(self._read, link)

    def _connect(self) -> coredis.Redis[bytes]:
        try:
            import coredis
            from coredis.retry import NoRetryPolicy
        except ImportError:  # pragma: no cover - a dependency of the package
            raise BackplaneUnavailable("--redis needs the coredis package") from None
        try:
            return coredis.Redis.from_url(
                self.url,
                decode_responses=False,
                retry_policy=NoRetryPolicy(),
                stream_timeout=self._timeout,
                connect_timeout=self._timeout,
                client_name="trio-ws-demo",
            )
        except ValueError as exc:
            raise BackplaneUnavailable(f"invalid --redis URL {self.shown_url}: {exc}") from None

    async def _adopt(self, link: coredis.Redis[bytes], room: Room) -> None:
        """Load *room*'s shared epoch, offset and history; read it from now on."""
        key = _stream_key(room.name)
        async with link.pipeline(transaction=False) as pipe:
            pipe.set(_epoch_key(room.name), secrets.token_hex(4), condition=_tokens().NX)
            epoch_request = pipe.get(_epoch_key(room.name))
            newest_request = pipe.xrevrange(key, count=max(self._history, 1))
        epoch = await epoch_request
        newest = await newest_request
        entries = []
        for entry in reversed(newest):
            parsed = _parse_entry(entry)
            if parsed is None:
                self.skipped += 1
                continue
            entries.append(parsed)
        last = entries[-1][0] if entries else 0
        room.adopt(
            (epoch or b"").decode("utf-8", "replace"),
            last,
            entries[-self._history :] if self._history else [],
        )
        self._followed[room.name] = f"0-{last}".encode()

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
        for room in self._rooms.rooms():
            room.notify_v1({"type": "backplane", "up": True})

    def _go_down(self, why: str) -> None:
        was_up, self.up = self.up, False
        self._wake_reader = None
        self._followed.clear()
        if was_up:
            logger.warning("backplane: lost Redis at %s (%s); serving locally", self.shown_url, why)
            for room in self._rooms.rooms():
                room.go_local()
                room.notify_v1({"type": "backplane", "up": False})
        elif not self._warned_down:
            logger.warning(
                "backplane: Redis at %s unreachable (%s); serving locally and retrying",
                self.shown_url,
                why,
            )
        self._warned_down = True
        # What Redis never confirmed is delivered here, once (reading resumes
        # from the stream's end when the link is back, so no duplicates).
        unsent, self._outbound = self._outbound, deque()
        for name, message, _ in unsent:
            local = self._rooms.get(name)
            if local is not None:
                local.publish(message)

    async def _write(self, link: coredis.Redis[bytes]) -> None:
        tokens = _tokens()
        while True:
            await self._wake_writer.wait()
            self._wake_writer = trio.Event()
            while self._outbound:
                batch = [self._outbound.popleft() for _ in range(min(_BATCH, len(self._outbound)))]
                try:
                    # stream_timeout bounds the pipeline (a frozen Redis)
                    async with link.pipeline(transaction=False) as pipe:
                        for name, message, at in batch:
                            binary = isinstance(message, bytes)
                            pipe.xadd(
                                _stream_key(name),
                                {
                                    "m": message,
                                    "b": b"1" if binary else b"0",
                                    "t": f"{at:.3f}",
                                },
                                identifier="0-*",
                                trim_strategy=tokens.MAXLEN,
                                trim_operator=tokens.APPROXIMATELY,
                                threshold=self._stream_length,
                            )
                except BaseException:
                    # Not confirmed: delivered locally when the link goes down.
                    self._outbound.extendleft(reversed(batch))
                    raise
                self.sent += len(batch)

    async def _read(self, link: coredis.Redis[bytes]) -> None:
        wake_key = f"{PREFIX}:wake:{secrets.token_hex(6)}"
        last_wake: Any = b"0-0"
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._poke, link, wake_key)
                while True:
                    streams: dict[str | bytes, bytes] = {wake_key: last_wake}
                    for name, last in self._followed.items():
                        streams[_stream_key(name)] = last
                    result = await link.xread(streams, count=_BATCH, block=_BLOCK_MS)
                    for key, entries in (result or {}).items():
                        name = key.decode()
                        if name == wake_key:
                            last_wake = entries[-1].identifier
                            continue
                        self._deliver(name.removeprefix(f"{PREFIX}:room:"), entries)
        finally:
            with (
                trio.CancelScope(shield=True),
                trio.move_on_after(self._timeout),
                contextlib.suppress(Exception),
            ):
                await link.delete([wake_key])

    async def _poke(self, link: coredis.Redis[bytes], key: str) -> None:
        """When a room is followed while XREAD blocks, add to this process's wake
        stream, so that the read returns and the next one includes the room."""
        while True:
            self._wake_reader = wake = trio.Event()
            await wake.wait()
            await link.xadd(key, {"w": b"1"}, trim_strategy=_tokens().MAXLEN, threshold=1)

    def _deliver(self, name: str, entries: Iterable[Any]) -> None:
        room = self._rooms.get(name)
        last: Any = None
        for entry in entries:
            last = entry.identifier
            if room is None:
                continue
            parsed = _parse_entry(entry)
            if parsed is None:
                self.skipped += 1
                logger.warning("backplane: skipped a malformed entry in room %r", name)
                continue
            offset, at, message = parsed
            room.publish(message, offset=offset, at=at)
            self.received += 1
        if last is not None and name in self._followed:
            self._followed[name] = last


class _LinkLost(Exception):
    """The link to Redis failed; ``str()`` says how."""


def _is_link_error(exc: BaseException) -> bool:
    from coredis.exceptions import RedisError

    return isinstance(exc, (RedisError, OSError, TimeoutError, trio.TooSlowError))


@contextlib.asynccontextmanager
async def _lost_on_error() -> AsyncIterator[None]:
    """Turn whatever Redis or the network raised (also inside task groups) into
    one :class:`_LinkLost`; anything else is a bug and goes up as it is."""
    try:
        yield
    except BaseException as exc:
        leaves = _leaves(exc)
        if leaves and all(_is_link_error(leaf) for leaf in leaves):
            raise _LinkLost(_describe(leaves[0])) from exc
        raise


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, trio.TooSlowError):
        return "no answer in time"
    text = str(exc) or type(exc).__name__
    return text[0].lower() + text[1:] if text else text


def _tokens() -> Any:
    """coredis's command tokens (imported on first use: without --redis, the
    server never loads coredis)."""
    from coredis import PureToken

    return PureToken
