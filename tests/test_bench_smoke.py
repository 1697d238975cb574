"""The benchmark harness still runs (a smoke run: no timing is asserted).

Checks that `benchmarks/bench.py --quick` starts our server and a baseline,
drives them with the Node load generator and reports a table in which nothing
was lost or reordered. Needs node and `npm ci --prefix benchmarks` (nox does
it); under CI a missing Node is a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import trio

BENCH = Path(__file__).parent.parent / "benchmarks"

if not (shutil.which("node") and (BENCH / "node_modules" / "ws").is_dir()) and not os.environ.get(
    "CI"
):
    pytest.skip("needs node and `npm ci --prefix benchmarks`", allow_module_level=True)


async def test_quick_fan_out_run_reports_a_clean_table() -> None:
    with trio.fail_after(120):
        done = await trio.run_process(
            [
                sys.executable,
                str(BENCH / "bench.py"),
                "--quick",
                "--only",
                "fan-out",
                "--servers",
                "ours,naive",
                "--duration",
                "0.5",
            ],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    for server in ("ours", "naive"):
        cells = [c.strip() for c in rows[server].split("|")[1:-1]]
        # deliveries/s > 0; lost and reordered are 0
        assert float(cells[1].replace(",", "")) > 0
        assert cells[6] == "0" and cells[7] == "0"
    assert "ours ÷ naive" in rows


async def test_quick_http_publish_run_reports_every_row() -> None:
    """`bench.py --http`: every row delivered what it published (the listener
    counts them before a row ends), with a rate and a ratio."""
    with trio.fail_after(120):
        done = await trio.run_process(
            [sys.executable, str(BENCH / "bench.py"), "--http", "--duration", "0.3"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()
    rows = [line for line in done.stdout.decode().splitlines() if line.startswith("| ")][1:]
    names = [row.split("|")[1].strip() for row in rows]
    assert names == [
        "WebSocket, 1 message per frame (baseline)",
        "HTTP POST, 1 message per request",
        "HTTP POST, ndjson, 100 per request",
        "HTTP POST, ndjson, 1000 per request",
    ]
    assert all(float(row.split("|")[2].replace(",", "")) > 0 for row in rows)
