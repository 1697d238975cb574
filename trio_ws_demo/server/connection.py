"""One accepted WebSocket connection: its reader, its outbox, and how it ends.

A connection is one task and one nursery. The task writes the 101 the front
door prepared, then runs the *reader*: bytes from the transport go into the
sans-I/O :class:`~trio_ws_demo.protocol.ServerProtocol`, whose events become
room messages handed to the broker (:mod:`trio_ws_demo.broker`: delivered here,
or through Redis first; see :mod:`trio_ws_demo.rooms`),
pongs and close frames. The nursery holds, only while a backlog is being
written, the outbox's writer task, and a server-initiated close. Nothing else
runs per connection: keepalive is one server-wide task
(:mod:`trio_ws_demo.server.keepalive`) and idle clients are written to synchronously
(:mod:`trio_ws_demo.server.outbox`).

How a connection ends is decided in one place: :meth:`Connection.note_end`
records the first reason, and :data:`~trio_ws_demo.protocol.CLOSE_TABLE` says
what that reason means for the last bytes. **Who ends it** is one rule too:
once the reader stops, for whatever reason (the peer's Close, bad input, end
of stream, the answer to our close), everything that follows is bounded by
``close_timeout`` and then the connection's nursery is cancelled, a writer
stuck on a full socket included (finding R2).

**What a client may send** is bounded as it is read: every frame, pings and
fragments included, is one unit of its message rate. Over the rate the
reader *reads less* (it waits until the bucket refills, so TCP slows the
sender and nothing is lost), or, with ``rate_limit_action="close"``, closes
with 1008. A message the process's memory budget has no room for closes its
sender with 1013. No close frame is ever written
before the 101. A peer that vanishes (a reset, a broken pipe) is an ordinary
end, logged at INFO; any other exception is caught here, logged once with its
traceback, and closes only this connection (1011): :meth:`Connection.run`
raises nothing but ``Cancelled``.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from ..broker import Broker
from ..budget import MemoryBudget, QueuedFrames
from ..coalesce import coalescing, more_to_come
from ..deflate import ClientDeflate
from ..envelopes import decode_publish
from ..extensions import Agreement
from ..histogram import Histogram
from ..hub import InboxBudget
from ..protocol import (
    CLOSE_TABLE,
    Closed,
    End,
    Message,
    Overloaded,
    PingReceived,
    ServerProtocol,
    State,
)
from ..redact import redact
from ..rooms import Kept, Room, Rooms
from ..stats import Traffic
from ..tokens import ANONYMOUS, EVERY_RIGHT, Grant
from .access_log import ACCESS_LOG_OFF, AccessLog
from .outbox import Outbox
from .peer import Peer
from .transport import Transport

__all__ = ["Connection", "ConnectionSettings"]

#: At most this much is read and dropped after a failed connection's close frame.
_LINGER_BYTES = 4 * 1024 * 1024

#: What a peer that vanishes looks like to us: nothing to answer, nothing to log loudly.
_GONE = (trio.BrokenResourceError, trio.ClosedResourceError)

logger = logging.getLogger("trio_ws_demo.server")


@dataclass(frozen=True)
class ConnectionSettings:
    """The part of the server's options a connection needs (shared by all)."""

    echo: bool
    budget: InboxBudget
    max_message_size: int
    close_timeout: float
    max_message_rate: float = 0.0
    """Frames per second a client may send on average (0: no limit)..."""
    message_burst: int = 1
    """... and at once."""
    close_over_rate: bool = False
    """Over the rate: close with 1008, instead of reading less."""
    memory: MemoryBudget | None = None
    """The process's memory budget (partial messages, TLS records, refusals)."""
    queued: QueuedFrames | None = None
    """The budget's count of queued frames, each once."""
    handshakes: Histogram | None = None
    """Where each connection's accept-to-101 time goes (``/metrics``)."""
    access_log: AccessLog = ACCESS_LOG_OFF
    """Where the upgrade's access line goes (status 101, once the 101 is written)."""


#: A task asked for before the connection's nursery was open, and its arguments.
_Job = tuple[Callable[..., Awaitable[object]], tuple[object, ...]]


class _Wake(enum.Enum):
    """Why the lean reader returned without an end: a task beside it is wanted."""

    TASK_WANTED = "task wanted"


#: Why a connection may end with its last messages not delivered.
_REFUSALS = frozenset({End.NOT_ALLOWED, End.RATE_LIMIT, End.TOKEN_EXPIRED, End.OVERLOADED})


class Connection:
    """Runs one WebSocket connection in its room."""

    __slots__ = (
        "_allowance",
        "_allowance_at",
        "_author",
        "_backfill",
        "_broker",
        "_can_write",
        "_cancelled",
        "_charged",
        "_deflate",
        "_expiry",
        "_grant",
        "_nursery",
        "_opened",
        "_own",
        "_response",
        "_room",
        "_rooms",
        "_scope",
        "_settings",
        "_since",
        "_started",
        "_target",
        "_waiting",
        "_wanted",
        "end",
        "last_seen",
        "messages_in",
        "outbox",
        "peer",
        "peer_close",
        "pinged_at",
        "protocol",
        "room",
        "traffic",
        "transport",
        "v1",
    )

    def __init__(
        self,
        transport: Transport,
        response: bytes,
        *,
        rooms: Rooms,
        broker: Broker,
        room: str,
        v1: bool = False,
        since: tuple[int, str] | None = None,
        own: bool = True,
        backfill: list[Kept] | None = None,
        grant: Grant = EVERY_RIGHT,
        settings: ConnectionSettings,
        traffic: Traffic,
        peer: Peer,
        target: str,
        early: bytes = b"",
        accepted: float | None = None,
        deflate: Agreement | None = None,
    ) -> None:
        self.transport = transport
        """The connection's socket, plain or TLS: every byte in or out passes it."""
        self._rooms = rooms
        self._broker = broker
        """Where this client's messages go (this process, or Redis first)."""
        self.room = room
        """The room's name ("" for the default room, path /)."""
        self._room: Room | None = None
        self.v1 = v1
        self._since = since
        self._own = own
        self._backfill = backfill
        self._grant = grant
        # Who its messages are from (the v1 envelope's "from"): never what the
        # client writes in a message, always the server's word.
        self._author = grant.name if grant.name != ANONYMOUS else f"guest-{secrets.token_hex(3)}"
        self._can_write = grant.everything or grant.can_write(room)
        """The grant's rights for this room, matched once (finding T13)."""
        self._charged = 0
        """Frames read that the rate limit has counted."""
        self._allowance = 0.0
        """Messages this client may still send now (--max-message-rate, a token bucket),
        as of :attr:`_allowance_at`; before its first message (at 0.0) the bucket is
        full. Shared constants until then: an idle connection holds no float of its own."""
        self._allowance_at = 0.0
        self._settings = settings
        self.traffic = traffic
        self.peer = peer
        self._target = target
        self._response: bytes | None = response
        """The 101, written first by :meth:`run`."""
        self._deflate = deflate
        """The permessage-deflate agreement, if any: inbound inflating, outbound copies."""
        self.protocol = ServerProtocol(
            settings.max_message_size, early, settings.memory, deflate=deflate is not None
        )
        self.messages_in = 0
        self.end: End | None = None
        self.peer_close: tuple[int, str] | None = None
        """The code and reason of the peer's close frame, once it came."""
        self._nursery: trio.Nursery | None = None
        """Opened only once a task beside the reader is wanted (see :meth:`run`)."""
        self._scope: trio.CancelScope | None = None
        """What ends the connection early: the lean scope, then the nursery's."""
        self._cancelled = False
        """The connection is to be dropped (abort, an early close): not a wake."""
        self._wanted: list[_Job] | None = None
        """Tasks asked for before the nursery was open: the reader opens it for them."""
        self._expiry: trio.CancelScope | None = None
        self._waiting = False
        """The reader waits for the socket with no nursery open: a wanted task wakes it."""
        self._opened = False
        self.outbox: Outbox | None = None
        self.last_seen = trio.current_time()
        """When the peer last sent anything (the keepalive reads this)."""
        self._started = self.last_seen if accepted is None else accepted
        """When its socket was accepted (trio time): where its handshake began."""
        self.pinged_at = -1.0
        """When the keepalive last pinged this peer."""

    # -- ways to end, callable from any task (plain defs: they never wait) ------

    def note_end(self, reason: End) -> None:
        """Record why the connection ends; the first reason wins."""
        if self.end is None:
            self.end = reason

    def request_shutdown(self, deadline: float = math.inf) -> None:
        """Close with 1001 after flushing what is queued; drop it at *deadline*."""
        self._close_soon(End.SHUTDOWN)
        if self._scope is not None:
            self._scope.deadline = min(self._scope.deadline, deadline)

    def abort(self, reason: End) -> None:
        """Drop the connection now, with no close handshake."""
        self.note_end(reason)
        self._cancel()

    def _cancel(self) -> None:
        """Drop whatever the connection is doing (its scope, lean or the nursery's)."""
        if self._scope is not None:
            self._cancelled = True
            self._scope.cancel()

    def start_soon(self, job: Callable[..., Awaitable[object]], *args: object) -> None:
        """Run *job* beside the reader, in the connection's nursery (the outbox's
        writer, our close, the token's expiry). Before the nursery is open the
        job waits and the reader is asked to open it: if it is waiting for the
        socket, it is woken (its lean scope is cancelled there, where nothing is
        lost, and it goes on in the nursery). RuntimeError once the connection
        has ended, as from a closed nursery."""
        if self._nursery is not None:
            self._nursery.start_soon(job, *args)
            return
        if self._scope is None:
            raise RuntimeError("the connection has ended")
        if self._wanted is None:
            self._wanted = []
        self._wanted.append((job, args))
        if self._waiting:
            self._waiting = False
            self._scope.cancel()

    @property
    def path(self) -> str:
        """The request target, with any token hidden (for logs)."""
        return redact(self._target)

    # -- for the server-wide keepalive ------------------------------------------

    @property
    def finished(self) -> bool:
        return self.end is not None

    @property
    def failed(self) -> bool:
        """True if an unexpected error ended this connection."""
        return self.end is End.SERVER_ERROR

    def send_ping(self, frame: bytes) -> None:
        if self.outbox is not None and self.protocol.state is State.OPEN:
            self.outbox.send_control_nowait(frame)

    def give_up(self) -> None:
        logger.debug("%s did not answer a ping in time", self.peer)
        self.abort(End.PING_TIMEOUT)

    def slow_consumer(self) -> None:
        """The hub gave up on this client (called inside hub.publish(); the
        outbox has freed the backlog already)."""
        self._close_soon(End.SLOW)

    def _close_soon(self, reason: End) -> None:
        if self.end is not None:
            return
        self.note_end(reason)
        self._leave_room()
        if self._scope is None:
            return  # run() has not begun, and will not
        if not self._opened and self._response is not None:
            # The 101 has not begun: no close frame may go before it, no goodbye.
            self._cancel()
            return
        code = CLOSE_TABLE[reason].code
        assert code is not None
        # CLOSING from this moment, not when the task below runs: what the
        # reader reads next is only scanned for the peer's Close (no answer to
        # bad input, no second close frame).
        frame = self.protocol.start_close(code, reason.value)
        if frame is None:
            return  # the peer's close or bad input came first: the reader answers that
        # (A 101 under way goes first: the outbox writes the close frame after it.)
        try:
            self.start_soon(self._close, reason, frame)
        except RuntimeError:  # the nursery is closing: this connection is ending anyway
            self._cancel()

    async def _close(self, reason: End, frame: bytes) -> None:
        """Our close: the frame after the queue (or instead of it), then the peer's
        answer, each bounded by close_timeout."""
        assert self.outbox is not None
        timeout = self._settings.close_timeout
        try:
            sent = await self.outbox.send_close(
                frame, flush=CLOSE_TABLE[reason].flush, timeout=timeout
            )
        except _GONE:
            sent = False
        if not sent:  # the frame could not go out whole: nothing left to wait for
            self._cancel()
        else:  # the reader waits for the peer's answer this long, then the socket closes
            scope = self._scope
            assert scope is not None
            scope.deadline = min(scope.deadline, trio.current_time() + timeout)

    # -- the connection ---------------------------------------------------------

    async def run(self) -> None:
        """Write the 101 and serve the WebSocket until it ends; never raises but Cancelled.

        An idle connection is most of a server's connections, and a nursery
        (with its cancel scope) is 1.3 KB of what one holds: so the reader runs
        in a lean cancel scope, with no nursery, until a task beside it is
        wanted (a backlog's writer, our close, a token's expiry: see
        :meth:`start_soon`) or it stops; then the rest runs in the connection's
        nursery as before, the reader included. TLS and other streams open it
        at once (their reads cannot be woken where nothing is lost)."""
        if self.end is not None:  # shut down before it began
            await self.transport.aclose()
            return
        try:
            ended: Closed | _Wake | None = _Wake.TASK_WANTED
            room: Room | None = None
            with trio.CancelScope() as lean:
                self._scope = lean
                room = await self._open()
                if self._wanted is None and self.transport.direct:
                    ended = await self._read(room)
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._scope = scope = nursery.cancel_scope
                scope.deadline = lean.deadline
                if self._cancelled:
                    scope.cancel()
                wanted, self._wanted = self._wanted or [], None
                for job, args in wanted:
                    nursery.start_soon(job, *args)
                del wanted
                dropped = self._cancelled or trio.current_time() >= scope.deadline
                try:
                    if ended is _Wake.TASK_WANTED:  # the reader goes on here
                        ended = None if room is None or dropped else await self._read(room)
                finally:
                    if self._expiry is not None:
                        self._expiry.cancel()  # the connection ends first: nothing to expire
                    self._leave_room()
                # The one rule for a connection's end: the reader has stopped, so
                # whatever is still under way (a flush, our close frame, a write
                # stuck on a full socket, the linger) gets close_timeout, then
                # the nursery is cancelled.
                deadline = trio.current_time() + self._settings.close_timeout
                scope.deadline = min(scope.deadline, deadline)
                if isinstance(ended, Closed):
                    await self._closed_by_peer(ended)
        except* _GONE:
            self.note_end(End.PEER_VANISHED)  # a reset, a broken pipe: nobody to tell
        except* Exception:
            self.end = End.SERVER_ERROR  # whatever was under way, this is why it ended
            logger.exception("%s: connection handler failed", self.peer)
        finally:
            if self._nursery is None:  # (a closed nursery refuses tasks itself)
                self._scope = None
            self._leave_room()
            await self._finish()

    async def _open(self) -> Room:
        """The outbox, the room joined, the 101 written: the WebSocket is open."""
        settings = self._settings
        self.outbox = outbox = Outbox(
            self.transport,
            self,
            settings.budget,
            self.traffic,
            owner=self,
            queued=settings.queued,
            wire_budget=settings.memory,
        )
        if self._deflate is not None:
            outbox.deflate = ClientDeflate(self._deflate)
        # Joined before the 101 goes out (what the room sends first
        # waits behind it), so that a client that has seen the 101
        # misses nothing published after.
        self._room = room = self._rooms.room(self.room)
        joined = room.join(
            outbox,
            v1=self.v1,
            since=self._since,
            backfill=self._backfill,
            name=self._grant.name,
            own=self._own,
        )
        self._backfill = None
        outbox.preload(joined.frames)
        del joined
        response, self._response = self._response, None
        assert response is not None
        await outbox.send_control(response)
        settings.access_log.record(self.peer, "GET", self._target, 101, len(response))
        del response  # an open connection keeps as little as it can
        if settings.handshakes is not None:
            settings.handshakes.observe(trio.current_time() - self._started)
        self._opened = True
        outbox.opened()
        self._log_opened()
        if self._grant.expires is not None:
            # A CancelScope is 360 bytes: only a grant that ends needs one.
            self._expiry = trio.CancelScope()
            self.start_soon(self._expire, self._grant.expires, self._expiry)
        return room

    def _leave_room(self) -> None:
        if self._room is not None and self.outbox is not None:
            self._rooms.leave(self._room, self.outbox)
            self._room = None

    def _published(self, room: Room, message: str | bytes) -> bool:
        """If *message* is a v1 client's ``publish`` command: publish it once
        (by its ``id``) and ack where it landed, or answer a malformed one
        with an error frame; True. False for an ordinary message."""
        outbox = self.outbox
        assert outbox is not None
        try:
            command = decode_publish(message)
        except ValueError as exc:
            room.tell(outbox, f"not delivered: {exc}")
            return True
        if command is None:
            return False
        identifier = command.identifier

        def landed(epoch: str, offset: int) -> None:
            room.ack(outbox, identifier, epoch, offset)

        key = str(identifier)
        self._broker.send(room, command.message, None, outbox, self._author, key, landed)
        return True

    async def _read(self, room: Room) -> Closed | _Wake | None:
        """Bytes in, protocol events out, until the connection is CLOSED: the
        event that closed it, or None at the end of the stream. With no nursery
        open (see :meth:`run`), it returns :attr:`_Wake.TASK_WANTED` as soon as
        a task beside it is wanted, or before it would pause a client over its
        rate (the pause is taken in the nursery, where it holds nothing up)."""
        # No bound methods cached in locals: an idle connection sits here,
        # and every object it keeps alive costs memory and GC time.
        outbox = self.outbox
        assert outbox is not None
        protocol = self.protocol
        transport = self.transport
        settings = self._settings
        echo = settings.echo
        traffic = self.traffic
        rate = settings.max_message_rate
        slow_down = rate and not settings.close_over_rate
        direct = transport.direct
        data: bytes | bytearray | None
        while True:
            # One step per read: the messages it held go to each idle client in
            # one write (see coalesce); a read of one message writes at once.
            # Nothing in it awaits.
            with coalescing():
                for event in protocol.events():
                    kind = type(event)
                    if kind is Message:
                        assert isinstance(event, Message)
                        if protocol.more_read():
                            more_to_come()
                        self.messages_in += 1
                        frame = event.frame
                        traffic.messages_in += 1
                        traffic.bytes_in += len(frame)
                        refused = self._refuse(len(frame))
                        if refused is not None:
                            self._close_soon(refused)  # the message is never delivered
                        elif echo:
                            room.plain.offer(outbox, frame, len(frame))
                        elif self.v1 and self._published(room, event.message):
                            pass  # a publish command, with its ack
                        else:
                            self._broker.send(room, event.message, frame, outbox, self._author)
                    elif kind is PingReceived:
                        assert isinstance(event, PingReceived)
                        outbox.send_pong_nowait(event.pong)
                    elif kind is Overloaded:
                        self._close_soon(End.OVERLOADED)  # the budget had no room for it
                    else:
                        assert isinstance(event, Closed)
                        return event
            lean = self._nursery is None
            if rate and protocol.frames_in != self._charged and protocol.state is State.OPEN:
                if lean and slow_down:
                    return _Wake.TASK_WANTED
                allowance = self._charge()
                if allowance < 0:
                    if slow_down:
                        await self._slow_down(-allowance / rate)
                    else:
                        self._close_soon(End.RATE_LIMIT)
            if lean and self._wanted:
                return _Wake.TASK_WANTED
            if direct:  # Transport.receive(), with no coroutine of its own while idle
                await trio.lowlevel.checkpoint_if_cancelled()
                data = transport.receive_nowait()
                if data is None:
                    while data is None:
                        if lean:  # start_soon() may wake it here: nothing is lost
                            self._waiting = True
                            try:
                                await transport.readable()
                            finally:
                                self._waiting = False
                        else:
                            await transport.readable()
                        data = transport.receive_nowait()
                else:
                    await trio.lowlevel.cancel_shielded_checkpoint()
            else:
                data = await transport.receive()
            if not data:
                self.note_end(End.PEER_VANISHED)  # no close frame: 1006
                return None
            self.last_seen = trio.current_time()
            protocol.receive_data(data)

    def _refuse(self, size: int) -> End | None:
        """Why the message just read must not be delivered, if it must not."""
        if self.end in _REFUSALS:
            return self.end  # refused already: nothing more is delivered
        if not self._can_write:
            return End.NOT_ALLOWED
        settings = self._settings
        if settings.close_over_rate and settings.max_message_rate and self._charge() < 0:
            return End.RATE_LIMIT
        memory = settings.memory
        if memory is not None and not memory.fits(size):
            return End.OVERLOADED
        return None

    def _charge(self) -> float:
        """The client's allowance (a token bucket) after the frames read since the
        last charge: negative when it sent more than --max-message-rate allows."""
        settings = self._settings
        frames = self.protocol.frames_in
        spent = frames - self._charged
        self._charged = frames
        now = trio.current_time()
        burst = settings.message_burst
        if self._allowance_at:
            refill = (now - self._allowance_at) * settings.max_message_rate
            allowance = min(self._allowance + refill, burst)
        else:
            allowance = burst  # the first frames: the bucket is full
        self._allowance_at = now
        self._allowance = allowance - spent
        return self._allowance

    async def _slow_down(self, seconds: float) -> None:
        """Read nothing for *seconds*: the bucket refills, and TCP holds the sender
        back meanwhile. The peer counts as alive while we choose not to read."""
        self.last_seen = trio.current_time() + seconds
        await trio.sleep(seconds)

    async def _expire(self, expires: float, scope: trio.CancelScope) -> None:
        """Close with 1008 ``token expired`` at the token's exp (a wall-clock time)."""
        with scope:
            await trio.sleep(max(0.0, expires - time.time()))
            self._close_soon(End.TOKEN_EXPIRED)

    async def _closed_by_peer(self, event: Closed) -> None:
        """The peer closed, or broke a rule: the last frame, as the close table says."""
        if event.end is End.PEER_CLOSED:
            self.peer_close = (event.code or 1005, event.reason)
        self.note_end(event.end)
        self._leave_room()
        if event.frame is None:
            return  # the peer answered our close: the handshake is complete
        assert self.end is not None and self.outbox is not None
        # Flush only if the peer's close is why we end (a slow client's queue is gone).
        flush = CLOSE_TABLE[self.end].flush and CLOSE_TABLE[event.end].flush
        timeout = self._settings.close_timeout
        sent = await self.outbox.send_close(event.frame, flush=flush, timeout=timeout)
        if sent and event.end is End.BAD_INPUT:
            await self._linger(timeout)

    async def _linger(self, timeout: float) -> None:
        """After failing the connection: half-close and read what the peer still
        sends (bounded), so that closing with unread bytes does not turn into a
        reset that destroys our close frame before the peer reads it."""
        assert self.outbox is not None
        await self.outbox.send_eof()
        drained = 0
        with trio.move_on_after(timeout):
            while drained < _LINGER_BYTES and (data := await self.transport.receive()):
                drained += len(data)

    async def _finish(self) -> None:
        """Close the transport; after an unexpected error, say 1011 first if we can.
        Never raises: the peer may be long gone."""
        self.protocol.discard()  # a message half-read holds part of the memory budget
        outbox = self.outbox
        if outbox is None:
            await self.transport.aclose()
        else:
            if self.end is End.SERVER_ERROR and self._opened and outbox.close_code_sent is None:
                frame = self.protocol.start_close(1011, End.SERVER_ERROR.value)
                if frame is not None and outbox.writable:
                    timeout = self._settings.close_timeout
                    with trio.move_on_after(timeout), contextlib.suppress(*_GONE):
                        await outbox.send_close(frame, flush=False, timeout=timeout)
            await outbox.aclose()
        self._log_closed()
        # The keepalive may hold this object a little longer: keep it small.
        self._nursery = self._scope = None

    # -- logging -----------------------------------------------------------------

    def _log_opened(self) -> None:
        if not logger.isEnabledFor(logging.INFO):
            return
        logger.info(
            "%s connected (path %s, %d clients)",
            self.peer,
            self.path,
            self._room.clients if self._room else 0,
            extra={
                "event": "opened",
                "peer": str(self.peer),
                "path": self.path,
                "room": self.room,
                "clients": self._room.clients if self._room else 0,
            },
        )

    def _log_closed(self) -> None:
        if not logger.isEnabledFor(logging.INFO):
            return
        outbox = self.outbox
        sent = outbox.close_code_sent if outbox is not None else None
        received = self.peer_close
        code = sent if sent is not None else (received[0] if received else None)
        if self.end in (End.PEER_VANISHED, End.PING_TIMEOUT):
            code = None
        reason = received[1] if received and received[1] else None
        if self.end in (End.SLOW, End.PING_TIMEOUT, End.SERVER_ERROR, End.SHUTDOWN):
            reason = self.end.value
        duration = trio.current_time() - self._started
        slow = self.end is End.SLOW
        delivered = outbox.delivered if outbox is not None else 0
        logger.info(
            "%s disconnected (path %s, code %s%s, %.1f s, %d messages in, %d out; %s)",
            self.peer,
            self.path,
            code if code is not None else "none",
            f" {reason!r}" if reason else "",
            duration,
            self.messages_in,
            delivered,
            self.end.value if self.end else "never opened",
            extra={
                "event": "closed",
                "peer": str(self.peer),
                "path": self.path,
                "end": self.end.name.lower() if self.end else None,
                "code": code,
                "reason": reason,
                "duration_s": round(duration, 3),
                "messages_in": self.messages_in,
                "messages_out": delivered,
                "slow": slow,
            },
        )
