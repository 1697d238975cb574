"""Fault campaigns against scale-out: real servers, a real Redis, a checker client.

The checker is written with ``websockets``, not with our client, so that it
judges the server from outside. It records every frame each listener gets and
computes, per run:

- **lost**: messages Redis accepted that a listener never got, although it
  stayed connected (or resumed) and was never told ``recovered: false``;
- **duplicates**: messages such a listener got twice;
- **conflicts**: ``(room, epoch, offset)`` keys that name two different messages,
  across every listener;
- **unannounced gaps**: offset jumps within one epoch, at such a listener, over
  messages Redis accepted that it never got.

What Redis accepted is read by a *tap*: an ``XREAD`` of every room's stream
from the start, straight from Redis, reconnecting as needed.

Servers reach Redis through a :class:`Cable` each (an in-process TCP proxy a
test can cut, like a partition, or reset), so one process can lose Redis while
the others keep it. The network-namespace tests (``test_partitions.py``) cut
real links instead.

``python -m tests.chaos --seconds 20`` (``nox -s chaos``) runs every scenario for
longer and prints the figures table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.trio.client import connect

from . import netns
from .processes import Process, run_cli
from .redis_server import RedisServer
from .sentinel_rig import SENTINEL, SentinelCluster, sentinel_cluster

V1 = ["trio-ws-demo.v1"]
PREFIX = b"trio-ws-demo:room:"


# -- a cable a test can cut ----------------------------------------------------------


class Cable:
    """A TCP proxy from a free loopback port to *target*.

    :meth:`cut` stops forwarding in both directions and holds new connections,
    like a partition (TCP connections stay open; what was sent meanwhile
    arrives after :meth:`heal`, as TCP would retransmit it). :meth:`reset`
    closes every relayed connection, like ``CLIENT KILL``.
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self._up = trio.Event()
        self._up.set()
        self._scopes: set[trio.CancelScope] = set()

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started(self.port)
            await trio.serve_listeners(self._relay, listeners, handler_nursery=nursery)

    def cut(self) -> None:
        self._up = trio.Event()

    def heal(self) -> None:
        self._up.set()

    def reset(self) -> None:
        for scope in list(self._scopes):
            scope.cancel()

    async def _relay(self, client: trio.SocketStream) -> None:
        await self._up.wait()
        try:
            server = await trio.open_tcp_stream("127.0.0.1", self.target)
        except OSError:
            await client.aclose()
            return
        async with client, server, trio.open_nursery() as nursery:
            self._scopes.add(nursery.cancel_scope)
            nursery.start_soon(self._pump, client, server, nursery.cancel_scope)
            nursery.start_soon(self._pump, server, client, nursery.cancel_scope)
        self._scopes.discard(nursery.cancel_scope)

    async def _pump(
        self, source: trio.SocketStream, sink: trio.SocketStream, both: trio.CancelScope
    ) -> None:
        try:
            while data := await source.receive_some(65536):
                await self._up.wait()
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        both.cancel()


# -- what Redis accepted ---------------------------------------------------------------


class Progress:
    """Set whenever the tap or a listener notes something: what :func:`settle` waits on."""

    def __init__(self) -> None:
        self.event = trio.Event()

    def note(self) -> None:
        self.event.set()

    async def wait(self) -> None:
        await self.event.wait()
        self.event = trio.Event()


class Tap:
    """Reads every room stream from Redis directly: what Redis accepted."""

    def __init__(
        self,
        host: str,
        port: int,
        rooms: list[str],
        progress: Progress,
        where: Callable[[], tuple[str, int]] | None = None,
    ) -> None:
        self._progress = progress
        self._host = host
        self._port = port
        self._where = where
        """Where Redis is now, asked on every reconnect (a Sentinel failover moves it)."""
        self._positions: dict[bytes, str] = {PREFIX + room.encode(): "0-0" for room in rooms}
        self.accepted: dict[str, dict[tuple[str, int], str]] = defaultdict(dict)
        """room -> (epoch, offset) -> text"""
        self._texts: dict[str, set[str]] = defaultdict(set)

    def texts(self, room: str) -> set[str]:
        """Every message Redis accepted in *room* (also one whose key was reused)."""
        return self._texts[room]

    def owed(self, listener: Listener) -> set[str]:
        """What Redis accepted that *listener* must get (a late joiner: what
        came after the stream ID it joined at)."""
        after = listener.owed_after
        if after is None:
            return self._texts[listener.room]
        accepted = self.accepted[listener.room].items()
        return {text for (epoch, offset), text in accepted if (int(epoch), offset) > after}

    async def run(self) -> None:
        import coredis

        while True:
            host, port = self._where() if self._where is not None else (self._host, self._port)
            try:
                client: Any = coredis.Redis(
                    host=host, port=port, decode_responses=False, stream_timeout=5
                )
                async with client:
                    while True:
                        result = await client.xread(self._positions, count=1000, block=200)
                        for key, entries in (result or {}).items():
                            self._note(key, entries)
                        await self._restarted(client)
            except Exception:  # Redis restarted or refuses: read on when it is back
                await trio.sleep(0.2)  # a retry pause (nothing to wait on), as a client's backoff

    async def _restarted(self, client: Any) -> None:
        """A stream deleted and written again may restart below where the tap
        is: read it from its start again (whatever the server does about it)."""
        for key, position in self._positions.items():
            newest = await client.xrevrange(key, count=1)
            if newest and _id(newest[0].identifier.decode()) < _id(position):
                self._positions[key] = "0-0"

    def _note(self, key: bytes, entries: Any) -> None:
        self._progress.note()
        room = key[len(PREFIX) :].decode()
        for entry in entries:
            identifier = entry.identifier.decode()
            self._positions[key] = identifier
            epoch, _, offset = identifier.partition("-")
            text = entry.field_values.get(b"m")
            if text is not None:
                self.accepted[room][(epoch, int(offset))] = decoded = text.decode(
                    "utf-8", "replace"
                )
                self._texts[room].add(decoded)


def _id(text: str) -> tuple[int, int]:
    major, _, minor = text.partition("-")
    return int(major), int(minor)


# -- clients -----------------------------------------------------------------------------


@dataclass
class Listener:
    """A v1 client that records every frame; resumes (on any server) when cut off."""

    name: str
    room: str
    bases: list[str]
    frames: list[dict[str, Any]] = field(default_factory=list)
    announced: bool = False
    """Told ``recovered: false`` (a resume or a backplane frame): its losses are announced."""
    resumes: int = 0
    epoch: str | None = None
    offset: int | None = None
    stop: trio.Event = field(default_factory=trio.Event)
    drop_once: trio.Event | None = None
    """When set, the listener drops its connection once and resumes."""
    away: float = 0.0
    """Seconds it stays away after that drop before it resumes (a late resume)."""
    owed_after: tuple[int, int] | None = None
    """A late joiner is owed only the entries after this stream ID (what Redis
    held when it came); None: every message Redis accepted."""
    progress: Progress | None = None

    def texts(self) -> list[str]:
        return [f["text"] for f in self.frames if f.get("type") == "message"]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        attempt = 0
        started = False
        while not self.stop.is_set():
            base = self.bases[attempt % len(self.bases)]
            attempt += 1
            query = ""
            if self.epoch is not None and self.offset is not None:
                query = f"?since={self.offset}&epoch={self.epoch}"
            try:
                async with connect(
                    f"{base}/{self.room}{query}",
                    subprotocols=V1,  # type: ignore[list-item]
                    proxy=None,
                    max_size=None,
                    max_queue=None,
                    ping_interval=None,
                ) as ws:
                    first = self._note(json.loads(await ws.recv()))
                    if first.get("type") == "resume":
                        self.resumes += 1
                    if not started:
                        started = True
                        task_status.started()
                    async with trio.open_nursery() as nursery:

                        async def until_told(
                            scope: trio.CancelScope = nursery.cancel_scope,
                        ) -> None:
                            await self.stop.wait()
                            scope.cancel()

                        async def drop(scope: trio.CancelScope = nursery.cancel_scope) -> None:
                            assert self.drop_once is not None
                            await self.drop_once.wait()
                            self.drop_once = None
                            scope.cancel()

                        nursery.start_soon(until_told)
                        if self.drop_once is not None:
                            nursery.start_soon(drop)
                        while True:
                            self._note(json.loads(await ws.recv()))
            except* (ConnectionClosed, InvalidHandshake, OSError):
                pass
            away, self.away = (self.away, 0.0) if self.drop_once is None else (0.0, self.away)
            await trio.sleep(0.1 + away)  # a client's reconnect pause, or the late resume's absence

    def _note(self, frame: dict[str, Any]) -> dict[str, Any]:
        if self.progress is not None:
            self.progress.note()
        self.frames.append(frame)
        kind = frame.get("type")
        if kind in ("joined", "resume", "backplane"):
            if kind == "resume" and frame.get("epoch") != self.epoch:
                self.announced = True  # a new history: it says so
            if frame.get("recovered") is False:
                self.announced = True
            self.epoch = str(frame.get("epoch"))
            self.offset = int(frame.get("offset", 0))
            if kind == "joined":
                self.offset -= int(frame.get("history", 0))
        elif kind == "message":
            self.offset = int(frame["offset"])
        return frame


@dataclass
class Publisher:
    name: str
    room: str
    base: str
    rate: float
    sent: list[str] = field(default_factory=list)
    stop: trio.Event = field(default_factory=trio.Event)

    async def run(self) -> None:
        interval = 1 / self.rate
        while not self.stop.is_set():
            try:
                async with connect(f"{self.base}/{self.room}", proxy=None) as ws:
                    while not self.stop.is_set():
                        text = f"{self.name}:{len(self.sent)}"
                        await ws.send(text)
                        self.sent.append(text)
                        await trio.sleep(interval)
            except (ConnectionClosed, InvalidHandshake, OSError):
                await trio.sleep(0.1)


# -- figures -------------------------------------------------------------------------------


@dataclass
class Figures:
    published: int = 0
    accepted: int = 0
    lost: int = 0
    duplicates: int = 0
    conflicts: int = 0
    gaps: int = 0
    listeners: int = 0
    announced: int = 0
    local: int = 0
    """Messages some listener got that Redis never accepted: delivered on their
    own process during an outage (documented), never for a refused message."""

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicates or self.conflicts or self.gaps)


def judge(listeners: list[Listener], publishers: list[Publisher], tap: Tap) -> Figures:
    figures = Figures(
        published=sum(len(p.sent) for p in publishers),
        accepted=sum(len(tap.texts(room)) for room in {ls.room for ls in listeners}),
        listeners=len(listeners),
    )
    names: dict[tuple[str, str, int], set[str]] = defaultdict(set)
    for listener in listeners:
        for frame in listener.frames:
            if frame.get("type") == "message":
                names[(listener.room, str(frame["epoch"]), frame["offset"])].add(frame["text"])
    figures.conflicts = sum(1 for texts in names.values() if len(texts) > 1)
    for room in {ls.room for ls in listeners}:
        heard = {t for ls in listeners if ls.room == room for t in ls.texts()}
        figures.local += len(heard - tap.texts(room))
    for listener in listeners:
        if listener.announced:
            figures.announced += 1
            continue
        got = Counter(listener.texts())
        figures.duplicates += sum(count - 1 for count in got.values() if count > 1)
        accepted = tap.owed(listener)
        figures.lost += len(accepted - got.keys())
        by_key = tap.accepted[listener.room]
        previous: tuple[str, int] | None = None
        for frame in listener.frames:
            if frame.get("type") != "message":
                continue
            key = (str(frame["epoch"]), int(frame["offset"]))
            if previous is not None and previous[0] == key[0] and key[1] > previous[1] + 1:
                skipped = (by_key.get((key[0], n)) for n in range(previous[1] + 1, key[1]))
                if any(text is not None and text not in got for text in skipped):
                    figures.gaps += 1
            previous = key
    return figures


def with_epoch(listener: Listener) -> None:
    """Give each message frame the epoch it was sent under (frames carry none)."""
    epoch = None
    for frame in listener.frames:
        if frame.get("type") in ("joined", "resume", "backplane"):
            epoch = str(frame.get("epoch"))
        elif frame.get("type") == "message":
            frame["epoch"] = epoch


# -- a run ---------------------------------------------------------------------------------


@dataclass
class Cluster:
    """Redis and the servers, wherever they run; what a fault needs of them."""

    redis: Any
    """Has ``host``, ``port``, ``freeze()`` and ``thaw()``."""
    servers: list[Process]
    bases: list[str]
    cut: Callable[[int], Awaitable[None]]
    """Cut server *i* off from Redis (its clients keep it)."""
    heal: Callable[[int], Awaitable[None]]
    join: Callable[[str, int, tuple[int, int]], Awaitable[None]] | None = None
    """A new listener joins room *name* on server *i* now, owed what comes after
    a stream ID (set by :func:`campaign`)."""

    async def redis_cli(self, *args: str) -> str:
        return await redis_cli(self.redis.port, *args, host=self.redis.host)


ClusterFactory = Callable[[trio.Nursery, tuple[str, ...]], Any]


@asynccontextmanager
async def cluster(nursery: trio.Nursery, flags: tuple[str, ...]) -> AsyncIterator[Cluster]:
    """A redis-server and two ``serve --redis`` processes on loopback, each
    reaching Redis through its own :class:`Cable`."""
    redis = RedisServer(nursery)
    await redis.start()
    redis.host = "127.0.0.1"  # type: ignore[attr-defined]
    cables = [Cable(redis.port) for _ in range(2)]
    for cable in cables:
        await nursery.start(cable.run)
    processes: list[Process] = []
    bases: list[str] = []

    async def cut(index: int) -> None:
        cables[index].cut()

    async def heal(index: int) -> None:
        cables[index].heal()

    urls = [f"redis://127.0.0.1:{cable.port}/0" for cable in cables]
    try:
        async with _servers([((), url, "127.0.0.1") for url in urls], flags, processes, bases):
            yield Cluster(redis, processes, bases, cut, heal)
    finally:
        redis.thaw()
        await redis.kill()


@asynccontextmanager
async def _servers(
    places: list[tuple[tuple[str, ...], str, str]],
    flags: tuple[str, ...],
    processes: list[Process],
    bases: list[str],
) -> AsyncIterator[None]:
    """A server per (command prefix, Redis URL, host to reach it at)."""
    if not places:
        yield
        return
    (prefix, url, host), *rest = places
    bind = "0.0.0.0" if prefix else "127.0.0.1"
    async with run_cli("serve", "--host", bind, "--port", "0" if not prefix else "8000",
                       "--redis", url, "--log-level", "warning", *flags,
                       prefix=prefix) as process:  # fmt: skip
        line = await process.readline()
        assert line.startswith("Listening on ws://"), line
        processes.append(process)
        bases.append(f"ws://{host}:{line.split()[2].rsplit(':', 1)[1]}")
        async with _servers(rest, flags, processes, bases):
            yield


class _NamespaceRedis(RedisServer):
    """redis-server in the hosts' Redis namespace (freeze and thaw as on loopback)."""

    def __init__(self, hosts: netns.Hosts) -> None:
        self.hosts = hosts
        self.host, self.port = netns.REDIS_HOST, netns.REDIS_PORT
        self.process: trio.Process | None = None

    async def start_in(self, nursery: trio.Nursery) -> None:
        self.process = process = await trio.lowlevel.open_process(
            [*self.hosts.exec_in("r"), "redis-server", "--bind", self.host, "--port",
             str(self.port), "--save", "", "--appendonly", "no", "--protected-mode", "no"],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        assert process.stdout is not None
        seen = b""
        with trio.fail_after(10):
            while b"Ready to accept connections" not in seen:
                seen += await process.stdout.receive_some()
        nursery.start_soon(_drain, process.stdout)


async def _drain(stream: trio.abc.ReceiveStream) -> None:
    async with stream:
        while await stream.receive_some():
            pass


def in_namespaces(hosts: netns.Hosts) -> ClusterFactory:
    """Redis and two servers on the namespaced *hosts* (``netns.py``): a cut is
    ``ip link set bp down`` on the server's host. Run from the clients' namespace."""

    @asynccontextmanager
    async def place(nursery: trio.Nursery, flags: tuple[str, ...]) -> AsyncIterator[Cluster]:
        redis = _NamespaceRedis(hosts)
        await redis.start_in(nursery)

        async def cut(index: int) -> None:
            await trio.run_process(
                ["ip", "-n", hosts.ns(f"h{index + 1}"), "link", "set", "bp", "down"]
            )

        async def heal(index: int) -> None:
            await trio.run_process(
                ["ip", "-n", hosts.ns(f"h{index + 1}"), "link", "set", "bp", "up"]
            )

        url = f"redis://{redis.host}:{redis.port}/0"
        places = [(hosts.exec_in(f"h{i + 1}"), url, hosts.server_host(i)) for i in range(2)]
        processes: list[Process] = []
        bases: list[str] = []
        try:
            async with _servers(places, flags, processes, bases):
                yield Cluster(redis, processes, bases, cut, heal)
        finally:
            redis.thaw()
            await redis.kill()

    return place


class _SentinelRedis:
    """What a fault and the tap need of Redis under Sentinel: the master now
    (``host``, ``port``, ``where()``), which :meth:`failover` moves."""

    def __init__(self, cluster: SentinelCluster, cable: Cable | None) -> None:
        self.sentinels = cluster
        self.cable = cable
        """Between the replica and the master, when the scenario lags it."""
        self.current = cluster.master
        self.host = "127.0.0.1"

    @property
    def port(self) -> int:
        return self.current.port

    def where(self) -> tuple[str, int]:
        return self.host, self.current.port

    def freeze(self) -> None:
        self.current.freeze()

    def thaw(self) -> None:
        self.current.thaw()

    async def failover(self) -> float:
        """SIGKILL the master; return the seconds until every sentinel names the
        replica the master."""
        killed = time.monotonic()
        await self.current.kill()
        if self.cable is not None:
            self.cable.reset()  # what it held for the replica dies with the master
            self.cable.heal()
        with trio.fail_after(30):
            await self.sentinels.until_master_is(self.sentinels.replica.port)
        self.current = self.sentinels.replica
        return time.monotonic() - killed


def under_sentinel(lagging: bool = False) -> ClusterFactory:
    """A master, a replica, three sentinels (``sentinel_rig.py``) and two servers
    on ``--redis redis+sentinel://...``; with *lagging*, the replica replicates
    through a :class:`Cable` (which the fault cuts). The servers reach Redis
    directly: :meth:`Cluster.cut` is not available here."""

    @asynccontextmanager
    async def place(nursery: trio.Nursery, flags: tuple[str, ...]) -> AsyncIterator[Cluster]:
        cables: list[Cable] = []

        async def relay(master_port: int) -> int:
            cables.append(cable := Cable(master_port))
            return int(await nursery.start(cable.run))

        async with sentinel_cluster(
            nursery, relay=relay if lagging else None, failover_timeout=30_000 if lagging else 3000
        ) as sentinels:
            redis = _SentinelRedis(sentinels, cables[0] if cables else None)

            async def no_cut(index: int) -> None:
                raise NotImplementedError("the Sentinel scenarios do not cut servers off")

            processes: list[Process] = []
            bases: list[str] = []
            places = [((), sentinels.url, "127.0.0.1")] * 2
            async with _servers(places, flags, processes, bases):
                yield Cluster(redis, processes, bases, no_cut, no_cut)

    return place


Fault = Callable[[Cluster, list[Listener]], Awaitable[None]]


async def campaign(
    fault: Fault,
    *,
    seconds: float = 4.0,
    rooms: int = 2,
    rate: float = 50.0,
    flags: tuple[str, ...] = ("--history", "20"),
    resuming: bool = True,
    place: ClusterFactory = cluster,
) -> Figures:
    """Publish on every server into *rooms* rooms, apply *fault* in the middle,
    then let everything settle and judge what every listener got."""
    names = [f"room{i}" for i in range(rooms)]
    listeners: list[Listener] = []
    publishers: list[Publisher] = []
    async with trio.open_nursery() as outer:
        async with place(outer, flags) as c, trio.open_nursery() as nursery:
            # Clients stop before the servers, and the servers before the cables.
            progress = Progress()
            tap = Tap(c.redis.host, c.redis.port, names, progress, getattr(c.redis, "where", None))
            nursery.start_soon(tap.run)
            for room in names:
                for index, base in enumerate(c.bases):
                    listener = Listener(
                        f"{room}@{index}", room, [base, *c.bases], progress=progress
                    )
                    listeners.append(listener)
                    await nursery.start(listener.run)
                    if resuming:  # one that drops and resumes during the fault
                        again = Listener(
                            f"{room}@{index}r", room, [base, *c.bases], progress=progress
                        )
                        again.drop_once = trio.Event()
                        listeners.append(again)
                        await nursery.start(again.run)
            publishers += [
                Publisher(f"{room}-p{index}", room, base, rate)
                for room in names
                for index, base in enumerate(c.bases)
            ]
            for publisher in publishers:
                nursery.start_soon(publisher.run)

            async def join(room: str, index: int, after: tuple[int, int]) -> None:
                late = Listener(
                    f"{room}@{index}j",
                    room,
                    [c.bases[index], *c.bases],
                    progress=progress,
                    owed_after=after,
                )
                listeners.append(late)
                await nursery.start(late.run)

            c.join = join
            await trio.sleep(seconds / 2)
            await fault(c, listeners)
            for listener in listeners:
                if listener.drop_once is not None:
                    listener.drop_once.set()
            await trio.sleep(seconds / 2)
            for publisher in publishers:
                publisher.stop.set()
            await settle(listeners, tap, progress)
            for listener in listeners:
                listener.stop.set()
            nursery.cancel_scope.cancel()
        outer.cancel_scope.cancel()
    for listener in listeners:
        with_epoch(listener)
    return judge(listeners, publishers, tap)


async def settle(
    listeners: list[Listener], tap: Tap, progress: Progress, limit: float = 8.0
) -> None:
    """Wait until every listener has what Redis accepted (or *limit* seconds), then
    watch a further 0.3 s: a duplicate arriving late must be counted too."""
    with trio.move_on_after(limit):
        while not all(tap.owed(ls) <= set(ls.texts()) for ls in listeners if not ls.announced):
            await progress.wait()
    await trio.sleep(0.3)  # the observation window for late duplicates, not a wait


# -- the faults ----------------------------------------------------------------------------


async def partition(c: Cluster, _: list[Listener], seconds: float = 3.0) -> None:
    """Server 0 cannot reach Redis for a while; its clients stay."""
    await c.cut(0)
    await trio.sleep(seconds)
    await c.heal(0)


async def client_kill(c: Cluster, _: list[Listener]) -> None:
    """Redis drops every client connection (``CLIENT KILL TYPE normal``)."""
    await c.redis_cli("CLIENT", "KILL", "TYPE", "normal")


async def freeze(c: Cluster, _: list[Listener], seconds: float = 3.0) -> None:
    """Redis stops (SIGSTOP) for a while, with writes in flight."""
    c.redis.freeze()
    await trio.sleep(seconds)
    c.redis.thaw()


async def delete_streams(c: Cluster, listeners: list[Listener]) -> None:
    """Someone deletes the rooms' streams, as an operator might."""
    for room in {ls.room for ls in listeners}:
        await c.redis_cli("DEL", f"trio-ws-demo:room:{room}")


async def restart_redis(c: Cluster, _: list[Listener]) -> None:
    """Redis is killed and started again, empty (no persistence): every stream
    starts a new epoch, which the clients are told."""
    await c.redis.kill()
    await c.redis.start()


async def snapshot_restart(c: Cluster, _: list[Listener]) -> None:
    """Redis is SAVEd, takes a second more of messages (which the processes
    read), and is killed and started again from the snapshot: it has forgotten
    that second. The fence must start new epochs, not reuse its offsets."""
    await c.redis_cli("SAVE")
    await trio.sleep(1.0)
    await c.redis.kill()
    await c.redis.start()


async def late_resume(c: Cluster, listeners: list[Listener], seconds: float = 3.0) -> None:
    """No fault in Redis: the resuming listeners stay away *seconds* (about 300
    messages per room, far beyond ``--history 20``) and resume from the stream."""
    for listener in listeners:
        if listener.drop_once is not None:
            listener.away = seconds


async def join_while_frozen(c: Cluster, listeners: list[Listener], seconds: float = 3.0) -> None:
    """Redis is frozen; once both processes have gone local, a new listener
    joins each room on each process; then Redis thaws and commits the writes
    that timed out. The joiners are owed every message Redis accepted after
    they came (bug B: the writer's own in-flight message never reached them)."""
    # Writes wait while the streams' ends are read (what the joiners are not
    # owed); those that waited, like those in flight, are committed on thawing.
    await c.redis_cli("CLIENT", "PAUSE", "1000", "WRITE")
    rooms = sorted({listener.room for listener in listeners})
    tops = {}
    for room in rooms:
        newest = await c.redis_cli("XREVRANGE", f"trio-ws-demo:room:{room}", "+", "-", "COUNT", "1")
        tops[room] = _id(newest.splitlines()[0])
    c.redis.freeze()
    try:
        await trio.sleep(2.5)  # past the 2 s detection: the servers serve locally
        assert c.join is not None
        for room in rooms:
            for index in range(len(c.bases)):
                await c.join(room, index, tops[room])
        await trio.sleep(seconds - 2.5)
    finally:
        c.redis.thaw()


async def maxmemory(c: Cluster, _: list[Listener], seconds: float = 2.0) -> None:
    """Redis reaches ``maxmemory`` (noeviction) for a while: it refuses writes."""
    await c.redis_cli("CONFIG", "SET", "maxmemory", "1")
    await trio.sleep(seconds)
    await c.redis_cli("CONFIG", "SET", "maxmemory", "0")


async def kill_server(c: Cluster, _: list[Listener]) -> None:
    """Server 0 dies (SIGKILL); its clients resume on the other."""
    c.servers[0].process.kill()


#: The seconds from SIGKILL to every sentinel naming the new master, per run.
FAILOVER_TIMES: list[float] = []
#: The bytes of replication the promoted replica lacked, per lagging run.
LAGS: list[int] = []


async def sentinel_failover(c: Cluster, _: list[Listener]) -> None:
    """The master dies (SIGKILL) and the sentinels promote its replica."""
    FAILOVER_TIMES.append(await c.redis.failover())


async def lagging_replica_promoted(c: Cluster, _: list[Listener], seconds: float = 1.0) -> None:
    """The replica stops getting the master's writes for a while (its link is
    cut, as a slow network would), then the master dies and the sentinels
    promote the replica: what the master confirmed meanwhile is gone."""
    c.redis.cable.cut()
    await trio.sleep(seconds)
    offsets = []
    for port in (c.redis.sentinels.master.port, c.redis.sentinels.replica.port):
        info = await redis_cli(port, "INFO", "replication")
        offsets += [
            int(line.split(":")[1]) for line in info.split() if "master_repl_offset" in line
        ]
    LAGS.append(offsets[0] - offsets[1])
    FAILOVER_TIMES.append(await c.redis.failover())


async def redis_cli(port: int, *args: str, host: str = "127.0.0.1") -> str:
    result = await trio.run_process(
        ["redis-cli", "-h", host, "-p", str(port), *args], capture_stdout=True, check=False
    )
    return str(result.stdout.decode().strip())


SCENARIOS: dict[str, Fault] = {
    "partition": partition,
    "CLIENT KILL": client_kill,
    "SIGSTOP": freeze,
    "DEL stream": delete_streams,
    "kill -9 server": kill_server,
    "Redis restart": restart_redis,
    "restart from a snapshot": snapshot_restart,
    "maxmemory": maxmemory,
    "late resume beyond --history": late_resume,
    "join while Redis is frozen": join_while_frozen,
    "Sentinel failover": sentinel_failover,
    "lagging replica promoted": lagging_replica_promoted,
}
#: Where a scenario runs when not on the default place (always loopback).
PLACES: dict[str, ClusterFactory] = {
    "Sentinel failover": under_sentinel(),
    "lagging replica promoted": under_sentinel(lagging=True),
}


def table(rows: list[tuple[str, Figures]]) -> str:
    head = (
        "| scenario | published | accepted | local only | lost | duplicates | conflicts | gaps "
        "| announced |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, f in rows:
        lines.append(
            f"| {name} | {f.published} | {f.accepted} | {f.local} | {f.lost} | {f.duplicates} | "
            f"{f.conflicts} | {f.gaps} | {f.announced}/{f.listeners} |"
        )
    return "\n".join(lines)


async def _main(seconds: float, only: list[str], namespaces: str | None, as_json: bool) -> int:
    rows = []
    place = in_namespaces(netns.Hosts(namespaces)) if namespaces else cluster
    where = "network namespaces" if namespaces else "loopback, through cables"
    for name, fault in SCENARIOS.items():
        if only and name not in only:
            continue
        if name in PLACES and SENTINEL is None:
            print(f"{name}: skipped (needs redis-sentinel)", file=sys.stderr)
            continue
        started = time.monotonic()
        figures = await campaign(
            fault, seconds=seconds, rooms=3, rate=100, place=PLACES.get(name, place)
        )
        rows.append((name, figures))
        failover = f", failover {FAILOVER_TIMES[-1]:.1f} s" if name in PLACES else ""
        if fault is lagging_replica_promoted:
            failover += f", the replica {LAGS[-1]} bytes behind"
        print(f"{name} ({'loopback, Sentinel' if name in PLACES else where}): "
              f"{'clean' if figures.clean else 'NOT CLEAN'} "
              f"({time.monotonic() - started:.0f} s{failover})", file=sys.stderr)  # fmt: skip
    if as_json:
        print(json.dumps({name: vars(f) for name, f in rows}))
    else:
        print(table(rows))
    return 0 if all(f.clean for _, f in rows) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each run")
    parser.add_argument("--only", action="append", default=[], help="run this scenario only")
    parser.add_argument(
        "--namespaces",
        metavar="NAME",
        help="servers and Redis on the hosts netns.hosts(NAME) built (run from NAME-c)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    return trio.run(_main, args.seconds, args.only, args.namespaces, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
