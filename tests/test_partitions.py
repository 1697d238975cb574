"""Partitions on real links: Redis, two servers and the clients on hosts made of
network namespaces (``netns.py``), a server cut off with ``ip link set … down``.

Runs as root on Linux (CI is root); elsewhere it skips and says why. The
campaign itself runs in the clients' namespace (``python -m tests.chaos
--namespaces NAME``), since the root namespace gets no link to the hosts.
"""

from __future__ import annotations

import json
import os
import sys

import pytest
import trio

from . import netns
from .redis_server import require_redis


async def test_a_partition_on_a_real_link_keeps_one_truth() -> None:
    require_redis()
    reason = netns.unavailable()
    if reason is not None:
        pytest.skip(f"this machine cannot: {reason}")
    with netns.hosts() as hosts, trio.fail_after(120):
        result = await trio.run_process(
            [*hosts.exec_in("c"), sys.executable, "-m", "tests.chaos",
             "--namespaces", hosts.name, "--only", "partition", "--seconds", "6", "--json"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )  # fmt: skip
    assert result.stdout, result.stderr.decode()[-3000:]
    figures = json.loads(result.stdout)["partition"]
    print(figures)
    assert figures["accepted"] > 0
    assert (figures["lost"], figures["duplicates"], figures["conflicts"], figures["gaps"]) == (
        0, 0, 0, 0,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()[-3000:]
