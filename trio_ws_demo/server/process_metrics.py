"""The process's own figures in ``/metrics``: memory, CPU, file descriptors.

Every Prometheus client library exports the same ``process_*`` families, so
that dashboards for any process work for ours: ``process_virtual_memory_bytes``,
``process_resident_memory_bytes``, ``process_start_time_seconds``,
``process_cpu_seconds_total``, ``process_open_fds``, ``process_max_fds``. They
are read from ``/proc/self`` at scrape time, as prometheus_client's
``ProcessCollector`` reads them (same names, help texts and order); without
``/proc`` (not Linux) there are none.
"""

from __future__ import annotations

import math
import os

from ..exposition import Exposition

__all__ = ["ProcessMetrics"]

_PROC = "/proc"


class ProcessMetrics:
    """Writes the ``process_*`` families of this process (see the module)."""

    __slots__ = ("_boot", "_page", "_proc", "_ticks")

    def __init__(self, proc: str = _PROC) -> None:
        self._proc = proc
        self._ticks = float(os.sysconf("SC_CLK_TCK"))
        self._page = os.sysconf("SC_PAGESIZE")
        try:
            self._boot = _boot_time(proc)
        except OSError:  # no /proc: nothing to report
            self._boot = 0.0

    def write(self, out: Exposition) -> None:
        if not self._boot:
            return
        me = os.path.join(self._proc, "self")
        try:
            with open(os.path.join(me, "stat"), "rb") as stat:
                # After the command (in parentheses, and it may hold spaces), from field 3 on.
                fields = stat.read().split(b")")[-1].split()
        except OSError:
            pass
        else:
            out.gauge(
                "process_virtual_memory_bytes", "Virtual memory size in bytes.", float(fields[20])
            )
            out.gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                float(fields[21]) * self._page,
            )
            out.gauge(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                float(fields[19]) / self._ticks + self._boot,
            )
            out.counter(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                (float(fields[11]) + float(fields[12])) / self._ticks,
            )
        try:
            open_fds = len(os.listdir(os.path.join(me, "fd")))
            max_fds = _max_fds(os.path.join(me, "limits"))
        except OSError:
            return
        out.gauge("process_open_fds", "Number of open file descriptors.", open_fds)
        if max_fds is not None:
            out.gauge("process_max_fds", "Maximum number of open file descriptors.", max_fds)


def _boot_time(proc: str) -> float:
    """When the machine booted (seconds since the epoch): ``btime`` in ``/proc/stat``."""
    with open(os.path.join(proc, "stat"), "rb") as stat:
        for line in stat:
            if line.startswith(b"btime "):
                return float(line.split()[1])
    return 0.0


def _max_fds(limits: str) -> float | None:
    """The soft limit on open files, from ``/proc/self/limits``."""
    with open(limits, "rb") as lines:
        for line in lines:
            if line.startswith(b"Max open files"):
                soft = line.split()[3]
                return math.inf if soft == b"unlimited" else float(soft)
    return None
