"""Coalesced writes: what one synchronous step gives a client leaves in one write.

One read of a client's socket may hold several messages, and one backplane read
(an XREAD) holds a batch of them. Delivered one at a time, each message would
cost every idle subscriber one ``send()``: past a few clients, fan-out *is*
system calls (a C server that makes one per delivery spends nearly all its
time in the kernel). Inside :func:`coalescing`, once the step knows that
more than one message is coming (:func:`more_to_come`, or ``many=True``), a
subscriber that would write at once may instead *hold* what it is offered and
register with the step; when the step ends, every holder writes what it holds
with one write.

Until then nothing is held: a step of one message (one message in flight, the
common case when nothing queues up) has nothing to coalesce, and holding its
one frame per client (a list, a registration and a flush each: 1000 of them
for 1000 clients) would only cost time. So whoever reads says, before it
delivers a message, whether more came with it: the connection reader asks the
parser whether bytes of another frame follow (``ServerProtocol.more_read``),
the backplane and the broker count their batch. A step may start holding part
way (a frame written at once, then frames held): what is held goes after what
was written, so order is kept.

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

__all__ = ["Holder", "coalescing", "holders", "more_to_come"]


class Holder(Protocol):
    """A subscriber that may hold what it is offered until the step ends."""

    def flush_held(self) -> None:
        """Write what is held now (never waits, never raises)."""
        ...


class _Step(threading.local):
    # Per thread: a step is synchronous, so in one thread (one trio run) at most
    # one is under way; two trio runs in two threads never share one.
    under_way: list[Holder] | None = None
    """The holders of the step under way, None outside one..."""
    holders: list[Holder] | None = None
    """... and the same list once the step holds (more than one message is
    coming); None until then: write at once, as outside a step."""


_step = _Step()


def holders() -> list[Holder] | None:
    """Where a holder registers (once per hold) while a step holds; None outside
    one or before it holds: write at once, as always."""
    return _step.holders


def more_to_come() -> None:
    """More than one message is coming in the step under way: from now on, an
    idle subscriber holds what it is offered (nothing outside a step)."""
    _step.holders = _step.under_way


@contextmanager
def coalescing(*, many: bool = False) -> Iterator[None]:
    """A synchronous step whose writes to each client are coalesced once more
    than one message is coming: from the start with *many* (a batch the caller
    has counted), or from :func:`more_to_come` on.

    No checkpoint may be reached inside: what is held would wait for whatever
    the checkpoint waits for. A nested step is part of the one around it.
    """
    if _step.under_way is not None:
        if many:
            more_to_come()
        yield
        return
    held: list[Holder] = []
    _step.under_way = held
    if many:
        _step.holders = held
    try:
        yield
    finally:
        _step.under_way = _step.holders = None
        for holder in held:
            holder.flush_held()
