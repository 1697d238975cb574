"""Redis Sentinel on loopback for the failover tests: a master, a replica
(``--replicaof``) and three ``redis-sentinel`` processes watching them
(quorum 2, down after 1 s), each on a free 127.0.0.1 port, config files in a
temporary folder.

:func:`sentinel_cluster` is ready when every sentinel knows the replica and the
two other sentinels (they find each other through the master every 2 s), so a
kill of the master is failed over. What is waited for is a real process's state,
polled under ``trio.fail_after``: nothing here can signal it otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trio

from .conftest import free_port
from .redis_server import RedisServer, require_redis

SENTINEL = shutil.which("redis-sentinel")
SERVICE = "trio-ws-demo"
POLL = 0.1  # seconds between two looks at a sentinel's or a replica's state


def require_sentinel() -> str:
    require_redis()
    if SENTINEL is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install redis-sentinel (see .ci/run)")
        pytest.skip("needs redis-sentinel: apt-get install redis-sentinel (CI installs it)")
    return SENTINEL


async def redis_cli(port: int, *args: str) -> list[str]:
    """The lines redis-cli prints for one command to 127.0.0.1:*port* (none if it
    cannot connect)."""
    result = await trio.run_process(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return [line for line in result.stdout.decode().splitlines() if line]


class SentinelCluster:
    """The master, the replica and the sentinels; :attr:`url` for ``--redis``."""

    def __init__(self, master: RedisServer, replica: RedisServer, sentinels: list[int]) -> None:
        self.master = master
        self.replica = replica
        self.sentinels = sentinels
        self.host = "127.0.0.1"
        self.url = (
            "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in sentinels) + f"/{SERVICE}"
        )

    async def master_port(self, sentinel: int = 0) -> int | None:
        """The master's port as sentinel *sentinel* names it now."""
        lines = await redis_cli(
            self.sentinels[sentinel], "SENTINEL", "get-master-addr-by-name", SERVICE
        )
        return int(lines[1]) if len(lines) == 2 and lines[1].isdigit() else None

    async def until_master_is(self, port: int) -> None:
        """Until every sentinel names 127.0.0.1:*port* the master."""
        for index in range(len(self.sentinels)):
            await until(lambda index=index: self._names(index, port))

    async def _names(self, index: int, port: int) -> bool:
        return await self.master_port(index) == port

    async def until_ready(self) -> None:
        """Until the replica is in sync and every sentinel sees it and the others."""

        async def in_sync() -> bool:
            return "master_link_status:up" in await redis_cli(
                self.replica.port, "INFO", "replication"
            )

        await until(in_sync)
        want = {"num-slaves": "1", "num-other-sentinels": str(len(self.sentinels) - 1)}
        for port in self.sentinels:

            async def sees_all(port: int = port) -> bool:
                lines = await redis_cli(port, "SENTINEL", "MASTER", SERVICE)
                fields = dict(zip(lines[::2], lines[1::2], strict=False))
                return all(fields.get(k) == v for k, v in want.items())

            await until(sees_all)


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll *check*, a look at another process's state, until it holds (the
    caller bounds it with ``trio.fail_after``)."""
    while True:
        if await check():
            return
        await trio.sleep(POLL)


@asynccontextmanager
async def sentinel_cluster(
    nursery: trio.Nursery,
    sentinels: int = 3,
    relay: Callable[[int], Awaitable[int]] | None = None,
    failover_timeout: int = 3000,
) -> AsyncIterator[SentinelCluster]:
    """A master, its replica and *sentinels* sentinels, ready (see module doc);
    everything is killed at the end. With *relay*, the replica replicates
    through the port it returns for the master's (a cable a test can cut); the
    sentinels "fix" such a replica to the master's own port after twice
    *failover_timeout* (ms), so give that one a long timeout."""
    sentinel_binary = require_sentinel()
    master = RedisServer(nursery)
    await master.start()
    upstream = master.port if relay is None else await relay(master.port)
    # on-empty-db: the sync is loaded from the socket, no dump.rdb in the work tree
    replica = RedisServer(
        nursery,
        args=("--replicaof", "127.0.0.1", str(upstream), "--repl-diskless-load", "on-empty-db"),
    )
    await replica.start()
    processes: list[trio.Process] = []
    with tempfile.TemporaryDirectory(prefix="sentinels-") as folder:
        try:
            ports = []
            for index in range(sentinels):
                port = free_port()
                config = trio.Path(folder, f"sentinel{index}.conf")
                await config.write_text(
                    f"port {port}\nbind 127.0.0.1\ndaemonize no\ndir {folder}\n"
                    f"sentinel monitor {SERVICE} 127.0.0.1 {master.port} 2\n"
                    f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                    f"sentinel failover-timeout {SERVICE} {failover_timeout}\n"
                    f"sentinel parallel-syncs {SERVICE} 1\n"
                )
                processes.append(
                    await trio.lowlevel.open_process(
                        [sentinel_binary, str(config)],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
                ports.append(port)
            cluster = SentinelCluster(master, replica, ports)
            with trio.fail_after(30):
                await cluster.until_ready()
            yield cluster
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                await process.wait()
            for server in (master, replica):
                server.thaw()
                await server.kill()
