"""A graceful drain: the 1001 closes spread over a window, not all in one instant.

Closing N thousand clients at once sends N thousand reconnects to the other
processes in the same second (a thundering herd). A drain keeps serving while
the load balancer learns (from ``/readyz``'s 503) to send new clients elsewhere,
and closes the clients one by one: the k-th of N (in random order, so that no
kind of client, such as the oldest, always goes first) at ``window * k / N``
seconds. The first close comes a share of the window after the drain began, so
``/readyz`` has said 503 before anyone is told to go, and reconnects arrive
elsewhere at an even N / window per second. Each close is the ordinary 1001
(:meth:`~trio_ws_demo.server.connection.Connection.request_shutdown`), with its
own flush and close-handshake budget; *deadline* drops whoever is left.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Protocol

import trio

__all__ = ["DEFAULT_DRAIN_WINDOW", "close_spread", "close_times"]

DEFAULT_DRAIN_WINDOW = 5.0
"""Seconds a drain spreads its closes over: at 10,000 clients, 2,000 reconnects
a second to the other processes instead of 10,000 at once."""


class Closable(Protocol):
    def request_shutdown(self, deadline: float = ...) -> None: ...


def close_times(count: int, window: float, start: float) -> list[float]:
    """When each of *count* closes is due: evenly over *window*, the last at its end."""
    return [start + window * (k + 1) / count for k in range(count)]


async def close_spread(
    connections: Iterable[Closable],
    window: float,
    deadline: float,
    rng: random.Random | None = None,
) -> None:
    """Ask each of *connections* to close with 1001, spread over *window* seconds in
    random order; each may take until *deadline*. Returns once the last is asked
    (its close handshake may still be under way)."""
    order = list(connections)
    (rng or random.Random()).shuffle(order)
    times = close_times(len(order), window, trio.current_time())
    for due, connection in zip(times, order, strict=True):
        await trio.sleep_until(due)
        connection.request_shutdown(deadline)  # a no-op for one that has ended meanwhile
