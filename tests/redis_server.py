"""A real ``redis-server`` for the backplane tests: on a free loopback port, no
persistence, started and stopped by the test (and killed, frozen, restarted).

Without redis-server the tests skip, saying how to install it; under CI
(``$CI`` set) a missing redis-server is a failure, since ``.ci/run`` installs it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile

import pytest
import trio

from .conftest import free_port

REDIS = shutil.which("redis-server")


def require_redis() -> str:
    if REDIS is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install redis-server (see .ci/run)")
        pytest.skip("needs redis-server: apt-get install redis-server (CI installs it)")
    return REDIS


def redis_argv(port: int) -> list[str]:
    """redis-server on 127.0.0.1:*port*, in the foreground, keeping nothing on disk."""
    return [require_redis(), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
            "--appendonly", "no", "--daemonize", "no"]  # fmt: skip


class RedisServer:
    """One redis-server process; :meth:`start` again after :meth:`kill` reuses the port."""

    def __init__(
        self,
        nursery: trio.Nursery,
        password: str | None = None,
        args: tuple[str, ...] = (),
        *,
        snapshot_dir: str | None = None,
        replica_of: int | None = None,
    ) -> None:
        """*snapshot_dir*: ``SAVE`` writes a dump there, which a restart loads
        (nothing is saved by itself; without it, a directory of its own, so that
        no test loads another's dump); *replica_of*: a replica of the Redis on
        that port, started once it is in sync."""
        self._nursery = nursery
        self.args = args
        """More redis-server options (``--replicaof HOST PORT``, say)."""
        self.port = free_port()
        self.password = password
        self.snapshot_dir = snapshot_dir or tempfile.mkdtemp(prefix="redis-")
        self.replica_of = replica_of
        self.process: trio.Process | None = None
        self._started_once = False

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        """Start it; the first time, a port someone took since free_port() chose it
        is exchanged for another (a restart keeps its port: clients know it)."""
        for attempt in range(3):
            seen = await self._start()
            if seen is None:
                return
            if self._started_once or b"Address already in use" not in seen or attempt == 2:
                raise AssertionError(f"redis-server did not start: {seen.decode()}")
            self.port = free_port()

    async def _start(self) -> bytes | None:
        args = redis_argv(self.port)
        if self.password:
            args += ["--requirepass", self.password]
        args += ["--dir", self.snapshot_dir, "--dbfilename", "dump.rdb"]
        if self.replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        args += self.args
        self.process = process = await trio.lowlevel.open_process(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert process.stdout is not None
        seen = b""
        # A replica is ready once it holds what its master has.
        ready = (
            b"sync: Finished with success" if self.replica_of else b"Ready to accept connections"
        )
        with trio.fail_after(10):
            while ready not in seen:
                chunk = await process.stdout.receive_some()
                if not chunk:
                    await process.wait()
                    await process.stdout.aclose()
                    return seen
                seen += chunk
        self._started_once = True
        self._nursery.start_soon(_drain, process.stdout)  # a full pipe would stall Redis
        return None

    async def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            await self.process.wait()

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


async def _drain(stream: trio.abc.ReceiveStream) -> None:
    async with stream:
        while await stream.receive_some():
            pass
