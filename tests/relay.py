"""A TCP relay a test can cut, like a phone dropping its Wi-Fi.

    python tests/relay.py TARGET_PORT

Listens on a free port of 127.0.0.1 and prints ``relay on PORT``; every
connection is relayed to 127.0.0.1:TARGET_PORT. SIGUSR1 cuts every relayed
connection at once, and holds new ones (accepted, not yet relayed) until
SIGUSR2 restores the cable: a test decides exactly when a client may come back.
"""

from __future__ import annotations

import signal
import sys

import trio


async def main(target: int) -> None:
    relayed: set[trio.CancelScope] = set()
    up = trio.Event()
    up.set()

    async def relay(client: trio.SocketStream) -> None:
        await up.wait()
        async with client, await trio.open_tcp_stream("127.0.0.1", target) as server:
            async with trio.open_nursery() as nursery:
                relayed.add(nursery.cancel_scope)
                nursery.start_soon(pump, client, server, nursery.cancel_scope)
                nursery.start_soon(pump, server, client, nursery.cancel_scope)
            relayed.discard(nursery.cancel_scope)

    async def pump(
        source: trio.SocketStream, sink: trio.SocketStream, both: trio.CancelScope
    ) -> None:
        try:
            while data := await source.receive_some(65536):
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        both.cancel()

    with trio.open_signal_receiver(signal.SIGUSR1, signal.SIGUSR2) as signals:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        print(f"relay on {listeners[0].socket.getsockname()[1]}", flush=True)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, relay, listeners)
            async for signum in signals:
                if signum == signal.SIGUSR1:
                    for scope in relayed:
                        scope.cancel()
                    if up.is_set():
                        up = trio.Event()
                else:
                    up.set()
                    print("restored", flush=True)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]))
