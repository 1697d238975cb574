"""Server CPU per delivery of one coalesced step, in one process: no load generator.

    python benchmarks/step_cost.py [--clients N] [--messages M] [--steps S]

The fan-out rows of ``bench.py`` measure everything a server does (reading the
publisher, parsing, scheduling), on a machine other work shares; the cost of
the step itself is a small part of that and drowns in the noise. Here a
server and *N* idle clients (raw sockets that only drain) share one trio run,
and the time is the process's CPU time spent *inside* the synchronous steps:
*M* messages broadcast per step, *S* steps, the clients drained (and the
process idle again) between steps. So it is exactly what a step costs per
delivery: the hub's offers, the writes, and any holding and flushing.

The step is told that *M* > 1 messages are coming (``coalescing(many=...)``);
for a tree whose ``coalescing`` takes no argument (which held from the first
message) it is called without one, so two trees compare with the same script.
"""

from __future__ import annotations

import argparse
import inspect
import time
from collections.abc import Callable

import trio
import trio.testing

from trio_ws_demo import BroadcastServer, ServerOptions, coalesce

_UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def _client(port: int, ready: Callable[[], None]) -> None:
    """Upgrade, then read and forget everything: a client that keeps up."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(_UPGRADE)
    head = b""
    while b"\r\n\r\n" not in head:
        head += await stream.receive_some(65536)
    ready()
    while await stream.receive_some(1 << 20):
        pass


async def _measure(clients: int, messages: int, steps: int) -> str:
    server = BroadcastServer(ServerOptions(max_clients=clients + 10))
    counted = inspect.signature(coalesce.coalescing).parameters.get("many") is not None
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run, "127.0.0.1", 0)
        connected = 0
        all_in = trio.Event()

        def ready() -> None:
            nonlocal connected
            connected += 1
            if connected == clients:
                all_in.set()

        for _ in range(clients):
            nursery.start_soon(_client, server.port, ready)
        await all_in.wait()
        await trio.testing.wait_all_tasks_blocked()  # every handshake done: all idle
        message = "x" * 64
        before = server.statistics()
        spent = 0.0
        for _ in range(steps):
            start = time.process_time()
            step = coalesce.coalescing(many=messages > 1) if counted else coalesce.coalescing()
            with step:
                for _ in range(messages):
                    server.broadcast(message)
            spent += time.process_time() - start
            await trio.testing.wait_all_tasks_blocked()  # drained: idle again
        after = server.statistics()
        nursery.cancel_scope.cancel()
    delivered = after.delivered - before.delivered
    writes = after.writes - before.writes
    return (
        f"{clients} clients, {messages} message(s) per step: "
        f"{spent / delivered * 1e6:.2f} µs CPU per delivery, "
        f"{writes / delivered:.3f} writes per delivery ({delivered} deliveries)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000, help="idle clients (default 1000)")
    parser.add_argument("--messages", type=int, default=1, help="messages per step (default 1)")
    parser.add_argument("--steps", type=int, default=300, help="steps measured (default 300)")
    args = parser.parse_args()
    if min(args.clients, args.messages, args.steps) < 1:
        parser.error("--clients, --messages and --steps must be at least 1")
    print(trio.run(_measure, args.clients, args.messages, args.steps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
