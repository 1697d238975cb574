"""The soak's reconnect storm, small enough for every test run (no timing asserted).

``benchmarks/soak.py`` opens its handshakes all at the same moment against a
server process with default limits; each must get 101 (or a clean 503), none
may hang or be reset. ``nox -s soak`` runs it with 5,000 clients.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

SOAK = Path(__file__).parent.parent / "benchmarks" / "soak.py"


async def test_a_small_reconnect_storm_is_answered_in_full() -> None:
    with trio.fail_after(120):
        done = await trio.run_process(
            [sys.executable, str(SOAK), "--storm", "500", "--cycles", "0"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    assert "500  101 switching protocols" in out
    assert "storm: PASS" in out
