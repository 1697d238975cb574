"""``--redis redis+sentinel://...``: the link follows a Sentinel failover.

A real master, a replica and three sentinels on loopback (tests/sentinel_rig.py),
two ``serve`` processes through the sentinels, a publisher POSTing to one and a
v1 listener on the other. The master is SIGKILLed while writes go on: writes
must be confirmed again through the promoted replica within 30 s, no
``(epoch, offset)`` may name two messages (what the POSTs were told and what the
listener got), every confirmed message must reach the listener unless it was
told ``recovered: false``, and ``/healthz`` and ``/metrics`` must name the new
master.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import trio

from .backplane_rigs import healthz, metrics, serve
from .chaos import Listener, Progress, with_epoch
from .sentinel_rig import sentinel_cluster
from .wsraw import http_exchange

FAILOVER_LIMIT = 30.0


@dataclass
class Poster:
    """POSTs numbered messages to one room, one connection each, and keeps what
    every answer said."""

    port: int
    room: str
    confirmed: dict[str, tuple[str, int]] = field(default_factory=dict)
    """text -> (epoch, offset) of each 200."""
    refused: int = 0
    last_confirmed_at: float = 0.0
    sent: int = 0
    confirmation: trio.Event = field(default_factory=trio.Event)

    async def post(self) -> bool:
        text = f"m{self.sent}"
        self.sent += 1
        request = (
            f"POST /{self.room} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(text)}\r\nConnection: close\r\n\r\n{text}"
        ).encode()
        with trio.fail_after(10):  # the server answers within 2 * --redis timeout
            answer = await http_exchange(self.port, request)
        head, _, body = answer.partition(b"\r\n\r\n")
        if head.split()[1] != b"200":
            self.refused += 1
            return False
        reply = json.loads(body)
        self.confirmed[text] = (str(reply["epoch"]), int(reply["offset"]))
        self.last_confirmed_at = time.monotonic()
        self.confirmation.set()
        self.confirmation = trio.Event()
        return True

    async def run(self, stop: trio.Event, interval: float = 0.05) -> None:
        while not stop.is_set():
            await self.post()
            await trio.sleep(interval)  # the publishing rate, not a wait


async def test_a_sentinel_failover_is_followed_without_conflicts_or_silent_loss() -> None:
    async with trio.open_nursery() as outer:
        async with sentinel_cluster(outer) as cluster:
            new_master = cluster.replica.port
            async with (
                serve(cluster.url, "--log-level", "warning") as (_, base_a),
                serve(cluster.url, "--log-level", "warning") as (_, base_b),
            ):
                port_a = int(base_a.rsplit(":", 1)[1])
                port_b = int(base_b.rsplit(":", 1)[1])
                status, health = await healthz(port_b)
                assert status == 200, health
                assert health["redis"] == {"master": f"127.0.0.1:{cluster.master.port}"}
                progress = Progress()
                listener = Listener("l", "room", [base_a], progress=progress)
                poster = Poster(port_b, "room")
                stop = trio.Event()
                async with trio.open_nursery() as nursery:
                    await nursery.start(listener.run)
                    nursery.start_soon(poster.run, stop)
                    with trio.fail_after(10):
                        while len(poster.confirmed) < 20:
                            await poster.confirmation.wait()
                    before = len(poster.confirmed)
                    await cluster.master.kill()
                    killed = time.monotonic()
                    with trio.fail_after(FAILOVER_LIMIT):
                        while len(poster.confirmed) == before:
                            await poster.confirmation.wait()
                    resumed = time.monotonic() - killed
                    with trio.fail_after(10):  # the promoted master is every sentinel's
                        await cluster.until_master_is(new_master)
                    with trio.fail_after(10):
                        while len(poster.confirmed) < before + 20:
                            await poster.confirmation.wait()
                    stop.set()
                    with trio.fail_after(15):  # the listener gets every confirmed message
                        while not listener.announced and not set(poster.confirmed) <= set(
                            listener.texts()
                        ):
                            await progress.wait()
                    listener.stop.set()
                    nursery.cancel_scope.cancel()
                for port in (port_a, port_b):
                    status, health = await healthz(port)
                    assert status == 200, health
                    assert health["redis"] == {"master": f"127.0.0.1:{new_master}"}
                    assert (
                        f'trio_ws_demo_backplane_master_info{{address="127.0.0.1:{new_master}"}}'
                        in await metrics(port)
                    )
        outer.cancel_scope.cancel()
    print(
        f"\nfailover: writes confirmed again {resumed:.1f} s after the master was killed; "
        f"{len(poster.confirmed)} confirmed, {poster.refused} refused; the listener got "
        f"{len(listener.texts())}, told recovered: false: {listener.announced}"
    )
    assert resumed < FAILOVER_LIMIT
    with_epoch(listener)
    names: dict[tuple[str, int], set[str]] = {}
    for text, key in poster.confirmed.items():
        names.setdefault(key, set()).add(text)
    for frame in listener.frames:
        if frame.get("type") == "message":
            names.setdefault((str(frame["epoch"]), int(frame["offset"])), set()).add(frame["text"])
    conflicts = {key: texts for key, texts in names.items() if len(texts) > 1}
    assert not conflicts, conflicts
    if not listener.announced:
        missing = set(poster.confirmed) - set(listener.texts())
        assert not missing, sorted(missing)
