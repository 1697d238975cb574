"""A fixed-bucket histogram of seconds, cheap enough for the fan-out path.

``/metrics`` reports three durations (see ``docs/metrics.md``): how late a
message is fanned out, how long the fan-out takes, and how long a handshake
took. Two of them are observed once per message per process, on the hot path,
so an observation is one :func:`bisect.bisect_left` over a short tuple and two
additions: no lock (one Trio thread), no label lookup, no allocation.
prometheus_client's own ``Histogram`` takes a lock and walks its buckets
linearly per observation, and lives in a global registry; this one is plain
data that the ``/metrics`` collector reads at scrape time, as it reads every
other counter, and keeps the sans-I/O core free of the exporter.

Buckets are *upper bounds* (Prometheus's ``le``): an observation of exactly
0.001 counts in the 0.001 bucket. Counts are kept per bucket and made
cumulative only in :meth:`Histogram.snapshot`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

__all__ = ["BROADCAST_BUCKETS", "LATENCY_BUCKETS", "Histogram", "HistogramSnapshot"]

#: Seconds, for what a person waits on: a delivery's lag, a handshake.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
#: Seconds, for one fan-out on this process: 100 local clients take about
#: 0.1 ms, so the buckets start lower than :data:`LATENCY_BUCKETS` (otherwise
#: nearly every fan-out would fall in the first one and say nothing).
BROADCAST_BUCKETS = (0.0001, 0.00025, *LATENCY_BUCKETS)


@dataclass(frozen=True)
class HistogramSnapshot:
    """A histogram as Prometheus exposes it: cumulative counts per upper bound."""

    buckets: tuple[tuple[float, int], ...]
    """``(le, observations <= le)``, ascending; ``+Inf`` is :attr:`count`."""
    sum: float
    count: int


class Histogram:
    """Observations of seconds in fixed buckets (see the module's docstring)."""

    __slots__ = ("_bounds", "_counts", "count", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError("a histogram's bounds are distinct and ascending")
        self._bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # the last: over every bound (+Inf only)
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        """Count one observation of *seconds* (never waits)."""
        self._counts[bisect.bisect_left(self._bounds, seconds)] += 1
        self.count += 1
        self.sum += seconds

    def snapshot(self) -> HistogramSnapshot:
        cumulative: list[tuple[float, int]] = []
        total = 0
        for bound, count in zip(self._bounds, self._counts, strict=False):
            total += count
            cumulative.append((bound, total))
        return HistogramSnapshot(tuple(cumulative), self.sum, self.count)
