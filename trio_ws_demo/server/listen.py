"""Listening sockets and the accept loop, kept on stdlib sockets on purpose.

We accept connections ourselves instead of using :func:`trio.serve_listeners`
so that each connection's *stdlib* socket object stays in our hands: the
broadcast fast path (see :class:`trio_ws_demo.server.outbox.Outbox`)
writes to it synchronously with ``socket.send()``. Trio still owns all
waiting: each accepted socket is wrapped with :func:`trio.socket.from_stdlib_socket`
and :class:`trio.SocketStream`, and the loop waits with
:func:`trio.lowlevel.wait_readable`.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from ..errors import ServerStartupError
from ..http import format_host

__all__ = ["accept_loop", "open_listeners"]

logger = logging.getLogger("trio_ws_demo.server")

# Errors that mean "the machine is out of something, try again soon" (as in trio).
_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
# Errors about one connection that died before we accepted it. Linux also passes
# a new connection's pending network error up from accept() and says to retry
# it like EAGAIN (accept(2), "Error handling"): those are the second line.
_TRANSIENT_ERRNOS = {errno.ECONNABORTED, errno.EPROTO, errno.EPERM} | {
    getattr(errno, name)
    for name in (
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",  # Linux only
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
    )
    if hasattr(errno, name)
}


async def open_listeners(host: str, port: int, *, reuse_port: bool = False) -> list[socket.socket]:
    """Listen on every address *host* resolves to, one port for all.

    With *reuse_port* (SO_REUSEPORT) other processes may listen on the same port,
    and the kernel spreads new connections over them.

    The name lookup is awaited (in a worker thread, as trio does), so it never
    blocks the event loop. Raises :class:`ServerStartupError` with a hint.
    """
    try:
        infos = await trio.socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        return _bind_all(infos, port, backlog=socket.SOMAXCONN, reuse_port=reuse_port)
    except socket.gaierror as exc:
        raise ServerStartupError(
            f"cannot listen on {host}:{port}: the host name does not resolve ({exc.strerror}); "
            "use an IP address such as 127.0.0.1 or 0.0.0.0"
        ) from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            hint = "the port is in use; stop the other server or choose another --port"
        elif exc.errno in (errno.EACCES, errno.EPERM):
            hint = "permission denied; use a port above 1023 or run with the needed privileges"
        elif exc.errno == errno.EADDRNOTAVAIL:
            hint = "the address is not on this machine; use 127.0.0.1 or 0.0.0.0"
        else:
            hint = exc.strerror or str(exc)
        raise ServerStartupError(f"cannot listen on {format_host(host)}:{port}: {hint}") from None


def _bind_all(
    infos: Sequence[tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]],
    port: int,
    backlog: int,
    reuse_port: bool = False,
) -> list[socket.socket]:
    sockets: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address[0]) in seen:
                continue
            seen.add((family, address[0]))
            if port == 0 and sockets:  # same port on every address
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            listener = socket.socket(family, kind, proto)
            sockets.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            listener.bind(address)
            listener.listen(backlog)
            listener.setblocking(False)
    except BaseException:
        for listener in sockets:
            listener.close()
        raise
    return sockets


#: Seconds a new connection waits for a pending-head slot before the oldest
#: head in progress (if it is that old) is dropped to make room.
PENDING_GRACE = 1.0


async def _take_slot(pending: trio.Semaphore, drop_oldest: Callable[[float], bool] | None) -> None:
    try:
        pending.acquire_nowait()
        return
    except trio.WouldBlock:
        pass
    while True:
        with trio.move_on_after(PENDING_GRACE):
            await pending.acquire()
            return
        if drop_oldest is not None:
            drop_oldest(PENDING_GRACE)


async def accept_loop(
    listener: socket.socket,
    nursery: trio.Nursery,
    handler: Callable[..., Awaitable[None]],
    pending: trio.Semaphore | None = None,
    drop_oldest: Callable[[float], bool] | None = None,
) -> None:
    """Accept connections forever, starting ``handler(stream, sock, pending)`` in
    *nursery* for each.

    With *pending*, each connection takes one of its slots before it is
    accepted (the handler gives it back once the request head is read): while
    none is free, new connections wait in the kernel's listen backlog, so
    half-sent heads cannot pile up in memory. So that slow heads cannot hold
    every slot (slowloris), a connection that has waited :data:`PENDING_GRACE`
    seconds for one has ``drop_oldest(PENDING_GRACE)`` free the slot of a head
    in progress at least that long. Closes *listener* when cancelled.
    """
    # The name trio would give each task, made once: trio makes a new string
    # per task (about 100 bytes for as long as the connection is open).
    name = f"{handler.__module__}.{handler.__qualname__}"
    with listener:
        while True:
            await trio.lowlevel.wait_readable(listener)
            while True:  # take every connection that is waiting, then wait again
                if pending is not None:
                    await _take_slot(pending, drop_oldest)
                try:
                    connection, _ = listener.accept()
                except BlockingIOError:
                    if pending is not None:
                        pending.release()
                    break
                except OSError as exc:
                    if pending is not None:
                        pending.release()
                    if exc.errno in _TRANSIENT_ERRNOS:
                        continue
                    if exc.errno in _CAPACITY_ERRNOS:
                        logger.warning("accept failed (%s); retrying in 0.1 s", exc.strerror)
                        await trio.sleep(0.1)
                        break
                    raise
                connection.setblocking(False)
                stream = trio.SocketStream(trio.socket.from_stdlib_socket(connection))
                nursery.start_soon(handler, stream, connection, pending, name=name)
