"""`bench.py --compression --quick` still runs and its table says what the modes promise.

A smoke run (20 clients, 50 chat messages): no timing is asserted, only what the
modes guarantee whatever the machine's load: every row is there, nothing was
lost, the sample clients that inflate decoded every message, and the bytes on
the wire per delivery order as the modes are built (``room`` below
``stateless`` below ``off``, and websockets' deflate below its raw frames).
Needs the ``websockets`` package (``nox -s bench`` installs it), not Node.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import trio

pytest.importorskip("websockets")

BENCH = Path(__file__).parent.parent / "benchmarks"
ROWS = [
    "ours off",
    "ours stateless",
    "ours room",
    "websockets (default deflate)",
    "websockets, no compression",
]


async def test_quick_compression_run_orders_the_modes_by_bytes() -> None:
    with trio.fail_after(120):
        done = await trio.run_process(
            [sys.executable, str(BENCH / "bench.py"), "--compression", "--quick"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()
    lines = [line for line in done.stdout.decode().splitlines() if line.startswith("| ")]
    first = lines[: lines.index(next(line for line in lines if "RSS per connection" in line))]
    rows = {cells[0]: cells for cells in ([c.strip() for c in r.split("|")[1:-1]] for r in first)}
    assert list(rows)[1:] == ROWS  # after the header
    wire = {name: float(rows[name][1]) for name in ROWS}
    assert wire["ours room"] < wire["ours stateless"] < wire["ours off"]
    assert wire["websockets (default deflate)"] < wire["websockets, no compression"]
    for name in ROWS:
        lost, decoded = rows[name][10], rows[name][11]
        assert lost == "0" and decoded == "5 of 5", rows[name]
    memory = [line.split("|")[1].strip() for line in lines if "KiB" in line]
    assert memory == ROWS
