"""Coalesced writes: what one synchronous step gives a client leaves in two writes at most.

One read of a client's socket may hold several messages, and one backplane read
(an XREAD) holds a batch of them. Delivered one at a time, each message would
cost every idle subscriber one ``send()``: past a few clients, fan-out *is*
system calls (a C server that makes one per delivery spends nearly all its
time in the kernel). Inside :func:`coalescing`, a subscriber that would write
at once writes its first message of the step at once, as outside a step, and
notes the step's number (:func:`step`); from its second message in the same
step on it *holds* what it is offered and registers with the step; when the
step ends, every holder writes what it holds with one write. So a client gets
at most two writes per step (more only if what it holds outgrows the outbox's
bounded chunk), and a step of one message (one message in flight,
the common case when nothing queues) costs no hold, no registration and no
flush: 1000 clients cost 1000 writes, as without coalescing, not 1000 holds.

This adds no latency: the step is synchronous (the code inside never reaches a
checkpoint), so what is held goes to the kernel before the task that read the
messages waits for anything, and nothing ever waits for a message that is not
already here (no Nagle-like timer). Order is kept: a holder takes everything
offered to it in the step after its first, in order, and writes it before
anything else; its first went to the kernel whole before any of them (or, if
the kernel took part of it, the client is busy and the rest queue behind it,
never held).

Pure, like the hub: this module knows nothing of sockets; the server's outbox
(:mod:`trio_ws_demo.server.outbox`) is the holder. The hub is unchanged:
``publish()`` still offers each message to each subscriber, so every frame is
still checked against its client's budget, one by one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

__all__ = ["Holder", "coalescing", "hold", "step"]


class Holder(Protocol):
    """A subscriber that may hold what it is offered until the step ends."""

    def flush_held(self) -> None:
        """Write what is held now (never waits, never raises)."""
        ...


class _Step(threading.local):
    # Per thread: a step is synchronous, so in one thread (one trio run) at most
    # one is under way; two trio runs in two threads never share one.
    holders: list[Holder] | None = None
    number = 0
    """The step under way's number (0 outside one): a subscriber compares it with
    the number it noted at its last write to know a step's second message. A
    number rather than the step's list, so that an outbox keeps no other
    outboxes alive through it."""
    count = 0


_step = _Step()


def step() -> int:
    """The number of the step under way (1, 2, ... per thread), or 0 outside one."""
    return _step.number


def hold(holder: Holder) -> None:
    """Register *holder* (once per hold) with the step under way, to be flushed
    when it ends; only inside one (:func:`step` is not 0)."""
    held = _step.holders
    assert held is not None, "hold() outside a coalesced step"
    held.append(holder)


@contextmanager
def coalescing() -> Iterator[None]:
    """A synchronous step whose writes to each client are coalesced.

    No checkpoint may be reached inside: what is held would wait for whatever
    the checkpoint waits for. A nested step is part of the one around it.
    """
    if _step.holders is not None:
        yield
        return
    held: list[Holder] = []
    _step.holders = held
    _step.count += 1
    _step.number = _step.count
    try:
        yield
    finally:
        _step.holders = None
        _step.number = 0
        for holder in held:
            holder.flush_held()
