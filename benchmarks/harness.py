"""Shared by the benchmark and the soak: start a server process, read its /proc."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

#: Our server, quiet, on a free port, without --max-message-rate (the publishers
#: here send as fast as they can, and no baseline limits them); callers append
#: their own flags.
OUR_SERVER = [
    sys.executable,
    "-m",
    "trio_ws_demo",
    "serve",
    "--port",
    "0",
    "--log-level",
    "warning",
    "--max-message-rate",
    "0",
]


def start_server(
    argv: list[str], preexec_fn: Callable[[], None] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """Start a server that prints ``Listening on URL`` first; return it and the URL."""
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, preexec_fn=preexec_fn
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("Listening on "):
        process.kill()
        raise RuntimeError(f"{argv[0]} did not start: {line!r}")
    return process, line.split()[2]  # "Listening on URL (chat page: ...)"


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ProcSample:
    cpu_seconds: float
    rss_bytes: int
    peak_rss_bytes: int
    open_fds: int


def sample(pid: int) -> ProcSample:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # Fields after the command name: utime is 14th overall (index 11 here), stime 15th.
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    rss = peak = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) * 1024
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return ProcSample(cpu, rss, peak, fds)
