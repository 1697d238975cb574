"""One connection's outgoing bytes: what is written to a client, when, and in what order.

An :class:`Outbox` is the hub's subscriber for one connection; it decides what
goes out, and its :class:`~trio_ws_demo.server.transport.Transport` (the one module
that touches the socket) moves the bytes. It owns:

* **the backlog and its budget.** :meth:`Outbox.offer` (a plain ``def``, called
  from :meth:`~trio_ws_demo.hub.Hub.publish`) writes a pre-encoded frame at
  once if the client is idle, or puts it in the client's :class:`Backlog`, a
  bounded trio memory channel, if it fits the
  :class:`~trio_ws_demo.hub.InboxBudget`, counting everything not yet written:
  queued, in the write under way, and the rest of a started frame. History
  handed to a joiner is queued first and counted apart: it has its own bound.
* **the sender task,** started in the connection's nursery when a backlog
  forms and gone again when it is written: it reads the channel and writes at
  most :data:`CHUNK_BYTES` of joined frames at a time, so the copy made for one
  system call never doubles the memory a client may hold. An idle client has
  no channel and no task.
* **the idle fast path.** When nothing is queued and no write is under way, a
  frame goes straight to the kernel with a non-blocking ``send()`` from inside
  ``offer()``, the way Node does, with no task switch; what the kernel did not
  take is finished first by the sender task.
* **coalesced writes** (:mod:`trio_ws_demo.coalesce`): inside a coalesced step
  (one read of a client's socket, one backplane read) that holds more than one
  message, an idle outbox *holds* what it is offered and writes it all with
  one ``send()`` when the step ends (a step of one message writes at once).
  Held frames count against the budget as queued; a frame the budget would
  refuse is never refused for being held: what is held is written first, and
  the frame is then offered as it would have been without the step (the budget
  is for what waits, and a client that keeps up waits for nothing). At most
  about :data:`CHUNK_BYTES` is held, so the copy stays bounded.
* **the rule that a frame, once started, is finished before any other frame,
  ping, pong or close.** A write that is cancelled or fails part-way leaves the
  outbox *broken*: nothing more is written, since the peer could not parse it.
* **control frames:** pings, pongs and the handshake response go at the next
  frame boundary, ahead of queued data (RFC 6455 §5.4 allows control frames
  between the frames of a message; we never split messages at all). **At
  most one pong waits**: a newer ping's pong replaces it (§5.5.3 allows
  answering only the most recent ping), so a peer that pings and never reads
  makes us hold 127 bytes, not a list (finding R1).
* **TLS records,** for ``wss://``: frames are sealed at the moment they are
  written (so the fast path works under TLS too), and records TLS makes while
  reading are written after every record sealed before them, at most
  :data:`MAX_WIRE_BACKLOG` bytes of them while a write is stuck.
* **the close frame,** which goes last: after the backlog, or after the
  backlog is dropped, as the close table says
  (:data:`~trio_ws_demo.protocol.CLOSE_TABLE`), and nothing after it. The
  close is **one-shot**: a second :meth:`Outbox.send_close` waits for the
  first and returns its result; it never writes a second close frame (R3).
* **which copy of a broadcast frame the client gets**, when it agreed
  permessage-deflate: :attr:`Outbox.deflate` picks it, in publish order, as
  the frame is offered (:mod:`trio_ws_demo.deflate`); everything after that
  sees one ``bytes`` frame, as before.
* **its part of the memory budget** (:mod:`trio_ws_demo.budget`): queued
  frames, each counted once however many queues hold it, and TLS records
  waiting behind a stuck write.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

from ..budget import MemoryBudget, QueuedFrames
from ..coalesce import holders
from ..deflate import ClientDeflate
from ..frames import close_frame_code
from ..hub import InboxBudget
from ..stats import Traffic
from .transport import Transport

__all__ = ["CHUNK_BYTES", "Outbox"]

#: Queued frames are joined into writes of about this size: one system call
#: for many small frames, and a bounded copy.
CHUNK_BYTES = 64 * 1024

_Frame = bytes | bytearray | memoryview

#: TLS records made while reading (alerts, key-update answers) that may wait
#: behind a stuck write; a peer that makes more without reading is cut off.
MAX_WIRE_BACKLOG = 256 * 1024


class _State(enum.Enum):
    OPENING = "opening"  # data frames queue until the handshake response is out
    OPEN = "open"
    CLOSING = "closing"  # no more data frames; the close frame is on its way
    CLOSED = "closed"  # the close frame went out, or the transport is closed
    BROKEN = "broken"  # a write failed or stopped part-way


_OPEN = _State.OPEN  # the hot path's one comparison


class Backlog:
    """One client's backlog: a bounded trio memory channel, filled by ``publish()``
    (``send_nowait``, never waiting) and read by the client's sender task
    (``receive_nowait``, in chunks). Made when a backlog first forms, so an idle
    client that never fell behind has neither channel nor task."""

    __slots__ = ("_receive", "_send", "count")

    def __init__(self, capacity: int) -> None:
        self._send, self._receive = trio.open_memory_channel[_Frame](capacity)
        self.count = 0
        """Frames in the channel (kept here: the hot path reads it)."""

    def __bool__(self) -> bool:
        return self.count > 0

    def put(self, frame: _Frame) -> None:
        self._send.send_nowait(frame)  # the budget was checked: it fits
        self.count += 1

    def take(self) -> _Frame:
        self.count -= 1
        return self._receive.receive_nowait()

    def take_all(self) -> list[_Frame]:
        frames = [self._receive.receive_nowait() for _ in range(self.count)]
        self.count = 0
        return frames

    def close(self) -> None:
        self._send.close()
        self._receive.close()


class TaskStarter(Protocol):
    """Where the writer task starts: the connection (which opens its nursery
    only when a task is wanted), or any trio nursery."""

    def start_soon(self, async_fn: Callable[[], Awaitable[object]], /) -> None: ...


class SlowConsumerOwner(Protocol):
    """Who is told when the hub gives up on this outbox's client."""

    def slow_consumer(self) -> None: ...


class Outbox:
    """Every byte written to one connection, in order, within a budget."""

    __slots__ = (
        "_backlog",
        "_budget",
        "_close_done",
        "_close_sent",
        "_counters",
        "_fast",
        "_held",
        "_held_bytes",
        "_history_bytes",
        "_history_messages",
        "_history_queued",
        "_idle",
        "_nursery",
        "_owner",
        "_partial",
        "_partial_messages",
        "_partial_size",
        "_pong",
        "_queued",
        "_state",
        "_tls",
        "_urgent",
        "_wire_budget",
        "_wire_waiting",
        "_writing",
        "close_code_sent",
        "deflate",
        "delivered",
        "queued_bytes",
        "queued_messages",
        "transport",
    )

    def __init__(
        self,
        transport: Transport,
        nursery: TaskStarter,
        budget: InboxBudget,
        counters: Traffic,
        owner: SlowConsumerOwner | None = None,
        queued: QueuedFrames | None = None,
        wire_budget: MemoryBudget | None = None,
    ) -> None:
        self.transport = transport
        """Where the bytes go. With TLS, plaintext is sealed into records as late
        as possible (:meth:`Transport.to_wire`), and only records reach the socket."""
        self._tls = transport.tls is not None
        self._nursery = nursery
        """Where the writer task runs while there is a backlog."""
        self._budget = budget
        self._counters = counters
        self._fast = transport.socket is not None
        """A synchronous send is possible: the idle fast path."""
        self._state = _State.OPENING
        self._writing = False
        """A write is under way (the writer task, or a direct control write)."""
        self._partial: _Frame | None = None
        """The rest of a frame the fast path started: always written first. Under
        TLS these are records (already sealed), and records made while reading
        are added here too."""
        self._partial_size = 0
        """The counted size of the messages in it (0 for a ping)..."""
        self._partial_messages = 0
        """... and how many (more than one only for a coalesced write under TLS,
        whose records cannot be told apart by frame)."""
        self._held: list[_Frame] | None = None
        """Frames held during a coalesced step, written when it ends (flush_held)."""
        self._held_bytes = 0
        self._wire_waiting = 0
        """Bytes of records made while reading that wait in _partial (bounded)."""
        self._owner = owner
        self._backlog: Backlog | None = None  # made when a backlog forms: idle costs nothing
        self._urgent: list[tuple[bytes, trio.Event | None]] | None = None
        self._pong: bytes | None = None
        """The one pong waiting to go out (the answer to the newest ping)."""
        self._queued = queued
        """The process's count of queued frames (the memory budget), if any."""
        self._wire_budget = wire_budget
        self._idle: trio.Event | None = None
        """Set when the outbox goes idle; one event shared by every waiter."""
        self._close_done: trio.Event | None = None
        """Made by the first send_close, set when it returns: the close is one-shot."""
        self._close_sent = False
        self.queued_messages = 0
        """Messages taken and not yet written (queued, in hand, or half-written)."""
        self._history_messages = self._history_bytes = self._history_queued = 0
        """Of those, the history preloaded for a joiner (first in the queue): its
        own bound is --history; the live budget does not count it."""
        self.queued_bytes = 0
        self.delivered = 0
        """Messages written to this connection."""
        self.close_code_sent: int | None = None
        self.deflate: ClientDeflate | None = None
        """Set if the client agreed permessage-deflate: it picks each broadcast's copy."""
        if transport.tls is not None:
            transport.tls.on_wire = self.send_wire_nowait
            early = transport.tls.leftover()
            if early:
                self.send_wire_nowait(early)

    # -- the hub's side (plain defs: they never wait) ---------------------------

    def offer(self, frame: bytes, size: int) -> bool:
        """Write or queue one data frame; False if it does not fit the budget.

        The outbox counts the bytes it holds (``len(frame)``), whatever *size* says:
        with permessage-deflate, the copy :attr:`deflate` picked for this client.
        """
        deflate = self.deflate
        if deflate is not None:
            frame = deflate.pick(frame)
        size = len(frame)
        state = self._state
        fast = self._fast
        if state is _OPEN:
            held = self._held
            if held is not None:  # holding for the step under way
                held_bytes = self._held_bytes
                if held_bytes < CHUNK_BYTES and self._budget.admits(len(held), held_bytes, size):
                    held.append(frame)
                    self._held_bytes = held_bytes + size
                    self.queued_messages += 1
                    self.queued_bytes += size
                    return True
                # Full: write what is held now, and offer this frame as if it
                # had not been (what the kernel did not take is queued).
                self.flush_held()
                if self._state is not _OPEN:
                    return True  # broken now: the reader sees it too
            if self._writing or self.queued_messages:
                fast = False  # busy: queue behind what is under way
        elif state is _State.OPENING:
            fast = False
        else:
            if deflate is not None:
                deflate.missed()
            return True  # closing: not slow, just too late
        if fast:
            step = holders()
            if step is not None:  # a coalesced step: hold it, write with the rest
                self._held, self._held_bytes = [frame], size
                self.queued_messages = 1
                self.queued_bytes = size
                step.append(self)
                return True
            tls = self._tls
            try:
                wire = self._seal(frame) if tls else frame
            except trio.BrokenResourceError:
                return True  # broken now: the reader sees it too and ends the connection
            sent = self.transport.send_nowait(wire)
            self._counters.writes += 1
            if sent == len(wire):
                self.delivered += 1
                counters = self._counters
                counters.delivered += 1
                counters.delivered_bytes += size
                return True
            if sent or tls:  # sealed records cannot be sealed again
                self._partial, self._partial_size = memoryview(wire)[sent:], size
                self._partial_messages = 1
                self.queued_messages = 1
                self.queued_bytes = size
                self._start_writer()
                return True
        live_messages = self.queued_messages - self._history_messages
        if not self._budget.admits(live_messages, self.queued_bytes - self._history_bytes, size):
            if deflate is not None:
                deflate.missed()  # its inflater never sees this frame
            return False
        backlog = self._backlog
        if backlog is None:
            backlog = self._backlog = Backlog(self._budget.max_messages)
        backlog.put(frame)
        if self._queued is not None:
            self._queued.hold(frame)
        self.queued_messages += 1
        self.queued_bytes += size
        if not self._writing and self._state is _State.OPEN:
            self._start_writer()
        return True

    def preload(self, frames: list[bytes]) -> None:
        """Queue what a joining client is sent first (its room's history).

        Outside the budget, which is for live traffic: the history has its
        own bound. Call before :meth:`opened`.
        """
        if frames:
            assert self._backlog is None, "preload before anything else is queued"
            backlog = self._backlog = Backlog(self._budget.max_messages + len(frames))
            queued = self._queued
            for frame in frames:
                backlog.put(frame)
                if queued is not None:
                    queued.hold(frame)
            size = sum(len(f) for f in frames)
            self.queued_messages += len(frames)
            self.queued_bytes += size
            self._history_messages += len(frames)
            self._history_bytes += size
            self._history_queued += len(frames)

    def opened(self) -> None:
        """The handshake response is out: data frames may follow.

        A connection subscribes before it accepts, so that a client which has
        seen the response misses nothing published after; what arrived in
        between was queued and goes out now.
        """
        if self._state is _State.OPENING:
            self._state = _State.OPEN
            if self._backlog and not self._writing:
                self._start_writer()

    def closed_as_slow(self) -> None:
        """The hub gave up on this client: free the backlog now, then tell the owner."""
        self.discard_queued()
        if self._owner is not None:
            self._owner.slow_consumer()

    def flush_held(self) -> None:
        """Write what was held during a coalesced step, with one ``send()``.

        What the kernel does not take is handled as the fast path handles a
        frame: the frame it took part of is finished first (by the writer
        task), and the frames after it wait in the backlog, where later frames
        meet the budget behind them, exactly as they would have frame by frame.
        """
        held = self._held
        if held is None:
            return
        self._held = None
        count, size = len(held), self._held_bytes
        self._held_bytes = 0
        if self._state is not _OPEN:  # broken since: nothing more goes out
            self.queued_messages -= count
            self.queued_bytes -= size
            return
        data = held[0] if count == 1 else b"".join(held)
        tls = self._tls
        try:
            wire = self._seal(data) if tls else data
        except trio.BrokenResourceError:
            self.queued_messages -= count
            self.queued_bytes -= size
            return  # broken now: the reader sees it too and ends the connection
        sent = self.transport.send_nowait(wire)
        self._counters.writes += 1
        if sent == len(wire):
            self._count_written(count, size)
            self.queued_messages -= count
            self.queued_bytes -= size
            return
        if tls:  # sealed records are one piece: all of it is the rest to finish
            self._partial = memoryview(wire)[sent:]
            self._partial_messages, self._partial_size = count, size
            self._start_writer()
            return
        # Plain TCP: the frames the kernel took are written; the rest of the one
        # it took part of goes first; the frames after it are queued.
        done = offset = 0
        for frame in held:
            if offset + len(frame) > sent:
                break
            offset += len(frame)
            done += 1
        self._count_written(done, offset)
        self.queued_messages -= done
        self.queued_bytes -= offset
        rest = held[done:]
        if offset < sent:  # started: finished before anything else
            first = rest.pop(0)
            self._partial = memoryview(first)[sent - offset :]
            self._partial_messages, self._partial_size = 1, len(first)
        if rest:
            backlog = self._backlog
            if backlog is None:
                backlog = self._backlog = Backlog(self._budget.max_messages)
            queued = self._queued
            for frame in rest:
                backlog.put(frame)
                if queued is not None:
                    queued.hold(frame)
        self._start_writer()

    def send_control_nowait(self, frame: bytes) -> None:
        """Send a control frame (a keepalive ping) at the next frame boundary."""
        if self._state is not _State.OPEN and self._state is not _State.CLOSING:
            return
        if self._held is not None:
            self.flush_held()  # the data held goes first, as if it had not been held
        if self._fast and not self._writing and not self._pending:
            if self._tls:  # sealed: it must go out as it is, now or first
                with contextlib.suppress(trio.BrokenResourceError):  # broken: nothing to do
                    self._send_wire_now(self._seal(frame))
                return
            sent = self._send_now(frame)
            if sent == len(frame):
                return
            if sent:
                self._partial, self._partial_size = memoryview(frame)[sent:], 0
                self._start_writer()
                return
        self._queue_urgent(frame, None)
        if not self._writing:
            self._start_writer()

    def send_pong_nowait(self, frame: bytes) -> None:
        """Answer a ping at the next frame boundary; an older pong still waiting
        is replaced (RFC 6455 §5.5.3): at most one is ever held."""
        if self._held is not None:
            self.flush_held()
        if self._pong is not None or self._writing or self._pending or not self._fast:
            if self._state is _State.OPEN or self._state is _State.CLOSING:
                self._pong = frame
                if not self._writing:
                    self._start_writer()
            return
        self.send_control_nowait(frame)

    def send_wire_nowait(self, wire: bytes) -> None:
        """Write TLS records made while reading, after every record made before them."""
        if self._done or not wire:
            return
        if self._held is not None:
            self.flush_held()  # sealed first, so its records go first
        if self._fast and not self._writing and not self._pending:
            self._send_wire_now(wire)
            return
        partial = self._partial
        if partial is None:
            self._partial, self._partial_size = bytearray(wire), 0
        elif isinstance(partial, bytearray):
            partial += wire  # amortised: no copy of what is already waiting
        else:
            self._partial = bytearray(partial) + wire
        self._wire_waiting += len(wire)
        if self._wire_budget is not None:
            self._wire_budget.force(len(wire))
        if self._wire_waiting > MAX_WIRE_BACKLOG:
            # The peer makes us answer (alerts) and reads nothing: let it go.
            self._state = _State.BROKEN
            self._partial, self._partial_messages = None, 0
            self._release_wire()
            if self._owner is not None:
                self._owner.slow_consumer()
            return
        if not self._writing:
            self._start_writer()

    def _send_wire_now(self, wire: _Frame) -> None:
        """Records, while nothing else is under way: to the kernel, the rest first next."""
        sent = self._send_now(wire)
        if sent < len(wire):
            self._partial, self._partial_size = memoryview(wire)[sent:], 0
            self._start_writer()

    def _send_now(self, data: _Frame) -> int:
        self._counters.writes += 1
        return self.transport.send_nowait(data)

    def _release_wire(self) -> None:
        if self._wire_budget is not None and self._wire_waiting:
            self._wire_budget.release(self._wire_waiting)
        self._wire_waiting = 0

    def discard_queued(self) -> None:
        """Drop queued data frames; a frame already started is still finished."""
        held = self._held
        if held is not None:
            self._held = None
            self.queued_messages -= len(held)
            self.queued_bytes -= self._held_bytes
            self._held_bytes = 0
        if self._backlog:
            frames = self._backlog.take_all()
            if self._queued is not None:
                for frame in frames:
                    self._queued.drop(frame)
            history = frames[: self._history_queued]
            self._history_messages -= len(history)
            self._history_bytes -= sum(len(f) for f in history)
            self.queued_messages -= len(frames)
            self.queued_bytes -= sum(len(f) for f in frames)
        self._history_queued = 0

    # -- writes that wait ------------------------------------------------------

    async def send_control(self, data: bytes) -> None:
        """Write *data* (a control frame, or the handshake response) at the next
        frame boundary, and return once it is written."""
        self._check_writable()
        if self._held is not None:
            self.flush_held()
        if self._writing:
            written = trio.Event()
            self._queue_urgent(data, written)
            await written.wait()
            self._check_writable()
            return
        self._writing = True
        try:
            await self._write(data)
        finally:
            self._write_done()

    async def send_close(self, frame: bytes, *, flush: bool, timeout: float) -> bool:
        """Send the close frame last, then nothing more.

        With *flush*, what is queued goes first, for at most *timeout*
        seconds; after that (or without *flush*) the queue is dropped, but a
        write under way is still finished, within *timeout* more, and the close
        frame follows it. Returns False if the close frame could not be sent
        without breaking a frame.

        One-shot: a second call (whatever its frame) waits for the first to
        finish and returns its result.
        """
        if self._close_done is not None:
            await self._close_done.wait()
            return self._close_sent
        self._close_done = done = trio.Event()
        try:
            self._close_sent = await self._send_close(frame, flush, timeout)
        finally:
            done.set()
        return self._close_sent

    async def _send_close(self, frame: bytes, flush: bool, timeout: float) -> bool:
        if self._state is _State.OPEN or self._state is _State.OPENING:
            self._state = _State.CLOSING
        if self._state is not _State.CLOSING:
            return False
        if flush:
            with trio.move_on_after(timeout):
                await self._wait_until_idle()
        self.discard_queued()
        with trio.move_on_after(timeout):
            await self._wait_until_idle()
            if self._done:  # broke while we waited: the peer could not parse a close
                return False
            self._writing = True
            try:
                await self._write(frame)
                self._state = _State.CLOSED
                self.close_code_sent = close_frame_code(frame)
            finally:
                self._write_done(start_writer=False)
            return True
        self.discard_queued()
        return False

    async def send_eof(self) -> None:
        """After the close frame, on plain TCP: tell the peer we send no more
        (best effort; under TLS the close_notify at :meth:`aclose` says it)."""
        await self.transport.send_eof()

    async def aclose(self) -> None:
        """Close the transport now (idempotent)."""
        # After a clean close too: close_notify follows our close frame (RFC 8446 §6.1).
        if not (self._state is _State.BROKEN or self._writing or self._pending):
            self.transport.close_notify()
        if self._state is not _State.BROKEN:
            self._state = _State.CLOSED
        self.discard_queued()
        self._release_wire()
        if self._backlog is not None:
            self._backlog.close()
        self._wake_idle()
        await self.transport.aclose()

    @property
    def writable(self) -> bool:
        """True while a close frame could still be written."""
        return self._state is not _State.CLOSED and self._state is not _State.BROKEN

    # -- the writer --------------------------------------------------------------

    def _start_writer(self) -> None:
        try:
            self._nursery.start_soon(self._drain)
        except RuntimeError:  # the connection is ending: nothing more goes out
            self._state = _State.BROKEN
            return
        self._writing = True

    async def _drain(self) -> None:
        """Write the backlog in chunks, then end: a task only while there is work."""
        try:
            while not self._done:
                wire, chunk, messages, size, waiters, history = self._take_chunk()
                if not chunk and wire is None:
                    break
                try:
                    await self._write_wire(self._to_wire(wire, chunk))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break  # the reader sees the same failure and ends the connection
                finally:
                    for waiter in waiters:
                        waiter.set()
                self._count_written(messages, size)
                self.queued_messages -= messages
                self.queued_bytes -= size
                self._history_messages -= history[0]
                self._history_bytes -= history[1]
        finally:
            self._write_done(start_writer=False)

    def _take_chunk(
        self,
    ) -> tuple[_Frame | None, list[_Frame], int, int, list[trio.Event], tuple[int, int]]:
        """The next write: the rest of a started frame (as it goes on the wire),
        then control frames, then data (plaintext); last, how many of those
        messages (and bytes) are preloaded history."""
        history_messages = history_bytes = 0
        chunk: list[_Frame] = []
        waiters: list[trio.Event] = []
        messages = size = length = 0
        wire = self._partial
        if wire is not None:
            length = len(wire)
            messages, size = self._partial_messages, self._partial_size  # 0 for a ping
            self._partial, self._partial_messages, self._partial_size = None, 0, 0
            self._release_wire()
        for data, waiter in self._urgent or ():
            chunk.append(data)
            if waiter is not None:
                waiters.append(waiter)
        self._urgent = None
        if self._pong is not None:
            chunk.append(self._pong)
            self._pong = None
        backlog = self._backlog if self._state is not _State.OPENING else None
        if wire is not None:
            backlog = None  # the rest of a started frame goes alone: never a copy of it
        queued = self._queued
        while backlog and (length < CHUNK_BYTES or not chunk):
            frame = backlog.take()
            if queued is not None:  # in this write now: its bytes go out with the chunk
                queued.drop(frame)
            chunk.append(frame)
            if history_messages < self._history_queued:
                history_messages += 1
                history_bytes += len(frame)
            length += len(frame)
            messages += 1
            size += len(frame)
        self._history_queued -= history_messages
        return wire, chunk, messages, size, waiters, (history_messages, history_bytes)

    def _to_wire(self, wire: _Frame | None, chunk: list[_Frame]) -> _Frame:
        """What to write: *wire* as it is, then *chunk* (sealed under TLS), in one
        copy at most, as before TLS: a plain backlog is joined once."""
        if self._tls and chunk:
            chunk = [self._seal(chunk[0] if len(chunk) == 1 else b"".join(chunk))]
        if wire is not None:
            chunk = [wire, *chunk]
        return chunk[0] if len(chunk) == 1 else b"".join(chunk)

    async def _write(self, data: _Frame) -> None:
        """Write *data* (plaintext: a control frame, the 101, the close frame)."""
        await self._write_wire(self._seal(data) if self._tls else data)

    def _seal(self, data: _Frame) -> _Frame:
        try:
            return self.transport.to_wire(data)
        except trio.BrokenResourceError:
            self._state = _State.BROKEN
            raise

    async def _write_wire(self, data: _Frame) -> None:
        self._counters.writes += 1
        try:
            await self.transport.send_all(data)
        except BaseException:
            # Cancelled or failed part-way: the peer may hold half a frame.
            self._state = _State.BROKEN
            raise

    def _write_done(self, *, start_writer: bool = True) -> None:
        self._writing = False
        if self._done:
            for _, waiter in self._urgent or ():
                if waiter is not None:
                    waiter.set()
            self._urgent = None
            self._pong = None
        elif start_writer and self._pending:
            self._start_writer()
            return
        self._wake_idle()

    @property
    def _done(self) -> bool:
        """Nothing more can be written: the close frame went out, or a write broke."""
        return self._state is _State.BROKEN or self._state is _State.CLOSED

    def _queue_urgent(self, data: bytes, written: trio.Event | None) -> None:
        if self._urgent is None:
            self._urgent = []
        self._urgent.append((data, written))

    @property
    def _pending(self) -> bool:
        return (
            self._partial is not None
            or bool(self._urgent)
            or self._pong is not None
            or bool(self._backlog)
        )

    async def _wait_until_idle(self) -> None:
        while self._writing or self._pending:
            if self._done:
                raise trio.BrokenResourceError("the connection broke before its close frame")
            if self._idle is None:  # shared: a second waiter must not orphan the first
                self._idle = trio.Event()
            await self._idle.wait()

    def _wake_idle(self) -> None:
        if self._idle is not None:
            self._idle.set()
            self._idle = None

    def _check_writable(self) -> None:
        if self._state is _State.BROKEN:
            raise trio.BrokenResourceError("a write to this connection failed part-way")
        if self._state is _State.CLOSED:
            raise trio.ClosedResourceError("the close frame has been sent")

    def _count_written(self, messages: int, size: int) -> None:
        self.delivered += messages
        self._counters.delivered += messages
        self._counters.delivered_bytes += size
