"""Coalesced writes: what one synchronous step gives a client leaves in one write.

One read of a client's socket may hold several messages, and one backplane read
(an XREAD) holds a batch of them. Delivered one at a time, each message would
cost every idle subscriber one ``send()``: past a few clients, fan-out *is*
system calls (a C server that makes one per delivery spends nearly all its
time in the kernel). Inside :func:`coalescing`, a subscriber that would write
at once may instead *hold* what it is offered and register with the step; when
the step ends, every holder writes what it holds with one write.

This adds no latency: the step is synchronous (the code inside never reaches a
checkpoint), so what is held goes to the kernel before the task that read the
messages waits for anything, and nothing ever waits for a message that is not
already here (no Nagle-like timer). Order is kept: a holder takes everything
offered to it in the step, in order, and writes it before anything else.

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

__all__ = ["Holder", "coalescing", "holders"]


class Holder(Protocol):
    """A subscriber that may hold what it is offered until the step ends."""

    def flush_held(self) -> None:
        """Write what is held now (never waits, never raises)."""
        ...


class _Step(threading.local):
    # Per thread: a step is synchronous, so in one thread (one trio run) at most
    # one is under way; two trio runs in two threads never share one.
    holders: list[Holder] | None = None


_step = _Step()


def holders() -> list[Holder] | None:
    """Where a holder registers (once per hold) while a step is under way; None
    outside one: write at once, as always."""
    return _step.holders


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
    try:
        yield
    finally:
        _step.holders = None
        for holder in held:
            holder.flush_held()
