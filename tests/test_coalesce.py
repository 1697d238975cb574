"""Coalesced fan-out (issue 30): what one read gives a client leaves in one write.

Several messages in one read of a publisher's socket (or in one XREAD of the
backplane) reach every subscriber whole and in order, with one write per idle
subscriber instead of one per message; ``ServerStatistics.writes`` (and
``trio_ws_demo_socket_writes_total`` on /metrics) against ``delivered`` shows
it. The budget still counts every frame: a client that keeps up gets the whole
burst whatever its budget, and one that is behind meets its budget frame by
frame, under both slow-client policies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing
import trustme
from trio.testing import wait_all_tasks_blocked
from wsproto.events import CloseConnection, Event

from trio_ws_demo import BroadcastServer, ServerOptions
from trio_ws_demo.coalesce import coalescing, more_to_come
from trio_ws_demo.hub import InboxBudget, SlowClientPolicy

from .conftest import StartServer, client_context, server_context
from .redis_server import RedisServer
from .wsraw import RawClient, http_exchange

TIMEOUT = 30
V1 = ["trio-ws-demo.v1"]


Connect = Callable[..., Awaitable[RawClient]]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """RawClient.connect, each client closed when the test ends."""
    opened: list[RawClient] = []

    async def open_one(port: int, **options: Any) -> RawClient:
        client = await RawClient.connect(port, **options)
        opened.append(client)
        return client

    yield open_one
    for client in opened:
        await trio.aclose_forcefully(client.stream)


def burst(client: RawClient, messages: list[str]) -> bytes:
    """Every message as a client frame, for one TCP write."""
    return b"".join(client.frame(message) for message in messages)


async def metric(server: BroadcastServer, name: str) -> float:
    answer = await http_exchange(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    for line in answer.partition(b"\r\n\r\n")[2].decode().splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not on /metrics")


async def read_by(server: BroadcastServer, messages_in: int) -> None:
    """Until the server has read *messages_in* messages from its clients (and so
    delivered them: a read's messages are delivered before the next await).
    Server and clients share this process: each time every task is blocked, the
    server has read what had arrived; bounded by the caller's ``fail_after``."""
    while server.statistics().messages_in < messages_in:
        await trio.testing.wait_all_tasks_blocked(cushion=0.01)


async def drain(client: RawClient) -> None:
    """Read and forget everything, so that this client never falls behind."""
    while True:
        await client.next_event()


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
async def test_a_burst_in_one_write_reaches_everyone_whole_in_order_in_one_write_each(
    start_server: StartServer, ca: trustme.CA, tls: bool, connect: Connect
) -> None:
    options = ServerOptions(ssl_context=server_context(ca)) if tls else None
    server = await start_server(options)
    context = client_context(ca) if tls else None
    messages = [f"message {n:03d} " + "x" * n for n in range(60)]
    with trio.fail_after(TIMEOUT):
        subscribers = [await connect(server.port, tls=context) for _ in range(3)]
        publisher = await connect(server.port, tls=context)
        before = server.statistics()
        await publisher.stream.send_all(burst(publisher, messages))
        for client in [*subscribers, publisher]:
            assert [await client.next_message() for _ in messages] == messages
        after = server.statistics()
        if not tls:  # (http_exchange speaks plain HTTP)
            assert await metric(server, "trio_ws_demo_socket_writes_total") == after.writes
    deliveries = after.delivered - before.delivered
    writes = after.writes - before.writes
    assert deliveries == 4 * len(messages)
    # One write per client and read of the burst (it fits one read or a few);
    # one per delivery (240) without coalescing.
    assert 4 <= writes <= deliveries // 10


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
async def test_a_step_holds_nothing_until_more_than_one_message_is_coming(
    start_server: StartServer, ca: trustme.CA, tls: bool, connect: Connect
) -> None:
    """A step of one message (one message in flight: nothing to coalesce) costs
    what the fast path costs: each client's frame goes to the kernel at once,
    nothing is held. Once the step knows more are coming, what follows is held
    and goes out after it, in one write per client."""
    options = ServerOptions(ssl_context=server_context(ca)) if tls else None
    server = await start_server(options)
    context = client_context(ca) if tls else None
    with trio.fail_after(TIMEOUT):
        clients = [await connect(server.port, tls=context) for _ in range(3)]
        await wait_all_tasks_blocked()  # every handshake done: all idle
        before = server.statistics()
        with coalescing():
            assert server.broadcast("first") == 3
            at_once = server.statistics()
            more_to_come()
            assert server.broadcast("second") == server.broadcast("third") == 3
            held = server.statistics()
        after = server.statistics()
        for client in clients:
            assert [await client.next_message() for _ in range(3)] == ["first", "second", "third"]
    assert (at_once.writes - before.writes, at_once.delivered - before.delivered) == (3, 3)
    assert (held.writes, held.delivered) == (at_once.writes, at_once.delivered)
    assert (after.writes - held.writes, after.delivered - held.delivered) == (3, 6)


@pytest.mark.parametrize("policy", [SlowClientPolicy.DROP, SlowClientPolicy.CLOSE])
async def test_a_client_that_keeps_up_gets_a_whole_burst_whatever_its_budget(
    start_server: StartServer, policy: SlowClientPolicy, connect: Connect
) -> None:
    """A held frame is never refused for being held: the budget is for what waits."""
    budget = InboxBudget(max_messages=2)
    server = await start_server(ServerOptions(budget=budget, slow_client=policy))
    messages = [f"burst {n}" for n in range(30)]
    with trio.fail_after(TIMEOUT):
        subscriber = await connect(server.port)
        publisher = await connect(server.port)
        await publisher.stream.send_all(burst(publisher, messages))
        for client in (subscriber, publisher):
            assert [await client.next_message() for _ in messages] == messages
    stats = server.statistics()
    assert (stats.dropped, stats.slow_closed) == (0, 0)


async def quiet_publisher(
    server: BroadcastServer, nursery: trio.Nursery, connect: Connect
) -> RawClient:
    """A v1 client that does not get its own messages (``?self=0``) and reads
    everything else, so that only the subscribers' queues count."""
    publisher = await connect(server.port, target="/?self=0", subprotocols=V1)
    nursery.start_soon(drain, publisher)
    return publisher


async def stuck_behind_a_started_frame(
    server: BroadcastServer, big: bytes, connect: Connect
) -> RawClient:
    """A client that reads nothing, with *big* started and not finished: one
    message waits for it, whatever is published next."""
    stuck = await connect(server.port, receive_buffer=4096)
    assert server.broadcast(big) == 1
    assert server.statistics().max_inbox == 1  # more than the kernel buffers hold
    return stuck


@pytest.mark.parametrize(
    ("policy", "count", "kept", "closed"),
    [
        (SlowClientPolicy.DROP, 10, 4, False),
        (SlowClientPolicy.CLOSE, 4, 4, False),
        (SlowClientPolicy.CLOSE, 5, 0, True),
    ],
    ids=["drop-the-sixth-on", "close-fits", "close-at-the-fifth"],
)
async def test_a_client_behind_meets_its_budget_frame_by_frame(
    start_server: StartServer,
    policy: SlowClientPolicy,
    count: int,
    kept: int,
    closed: bool,
    connect: Connect,
) -> None:
    """Budget 5, one message (a started frame) waiting: of a burst read at once,
    four more fit; the fifth is dropped, or closes the client with 1008."""
    budget = InboxBudget(max_messages=5)
    server = await start_server(ServerOptions(budget=budget, slow_client=policy, close_timeout=60))
    big = b"b" * (4 * 1024 * 1024)
    messages = [f"burst {n}" for n in range(count)]
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            stuck = await stuck_behind_a_started_frame(server, big, connect)
            publisher = await quiet_publisher(server, nursery, connect)
            before = server.statistics().messages_in
            await publisher.stream.send_all(burst(publisher, messages))
            await read_by(server, before + count)
            stats = server.statistics()
            assert stats.dropped == (count - kept if policy is SlowClientPolicy.DROP else 0)
            assert stats.slow_closed == int(closed)
            if closed:
                events: list[Event] = await stuck.events_until_close()
                assert [getattr(e, "data", None) for e in events[:-1]] == [big]
                assert isinstance(events[-1], CloseConnection) and events[-1].code == 1008
            else:
                assert await stuck.next_message() == big  # the started frame first
                assert [await stuck.next_message() for _ in range(kept)] == messages[:kept]
                server.broadcast("after")
                assert await stuck.next_message() == "after"  # nothing else was kept
            nursery.cancel_scope.cancel()


async def test_a_client_whose_socket_fills_mid_burst_keeps_an_in_order_prefix(
    start_server: StartServer, connect: Connect
) -> None:
    """Idle when the burst begins, full part-way: what the kernel took, the
    frame it took part of, and the budget's worth after it, in order; the rest
    is dropped, one count per frame."""
    budget = InboxBudget(max_messages=8)
    server = await start_server(ServerOptions(budget=budget, slow_client=SlowClientPolicy.DROP))
    messages = [f"{n:04d}" + "x" * 1020 for n in range(300)]
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            stuck = await connect(server.port, receive_buffer=4096)
            publisher = await quiet_publisher(server, nursery, connect)
            before = server.statistics().messages_in
            await publisher.stream.send_all(burst(publisher, messages))
            await read_by(server, before + len(messages))
            dropped = server.statistics().dropped
            assert dropped > 0  # 300 KB: more than the kernel buffers hold
            kept = len(messages) - dropped
            assert kept >= budget.max_messages
            assert [await stuck.next_message() for _ in range(kept)] == messages[:kept]
            server.broadcast("after")
            assert await stuck.next_message() == "after"
            nursery.cancel_scope.cancel()


async def test_an_xread_batch_reaches_everyone_in_order_in_few_writes(
    redis: RedisServer, start_server: StartServer, connect: Connect
) -> None:
    """With --redis, a burst goes to Redis in one pipeline and comes back in one
    XREAD or two (the first entry wakes the blocked read): one write per
    client per read, not per message."""
    server = await start_server(ServerOptions(redis=redis.url))
    messages = [f"entry {n:02d}" for n in range(40)]
    with trio.fail_after(TIMEOUT):
        subscribers = [await connect(server.port) for _ in range(3)]
        publisher = await connect(server.port)
        before = server.statistics()
        await publisher.stream.send_all(burst(publisher, messages))
        for client in [*subscribers, publisher]:
            assert [await client.next_message() for _ in messages] == messages
        after = server.statistics()
    assert after.backplane is not None and after.backplane.received >= len(messages)
    deliveries = after.delivered - before.delivered
    assert deliveries == 4 * len(messages)
    assert after.writes - before.writes <= deliveries // 5  # 160 without coalescing
