"""Listening sockets and the accept loop, kept on stdlib sockets on purpose.

We accept connections ourselves instead of using :func:`trio.serve_listeners`
so that each connection's *stdlib* socket object stays in our hands: the
broadcast fast path (see :meth:`trio_ws_demo.wire.FrameWire.try_write_now`)
writes to it synchronously with ``socket.send()``. Trio still owns all
waiting: each accepted socket is wrapped with :func:`trio.socket.from_stdlib_socket`
and :class:`trio.SocketStream`, and the loop waits with
:func:`trio.lowlevel.wait_readable`.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Awaitable, Callable

import trio

__all__ = ["accept_loop", "open_listening_sockets"]

logger = logging.getLogger("trio_ws_demo.server")

# Errors that mean "the machine is out of something, try again soon" (as in trio).
_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
# Errors about one connection that died before we accepted it.
_TRANSIENT_ERRNOS = {errno.ECONNABORTED, errno.EPROTO, errno.EPERM}


def open_listening_sockets(host: str, port: int, backlog: int) -> list[socket.socket]:
    """Bind and listen on every address *host* resolves to (one port for all).

    Raises :class:`OSError` (or :class:`socket.gaierror`) as the system reports it.
    """
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
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


async def accept_loop(
    listener: socket.socket,
    nursery: trio.Nursery,
    handler: Callable[[socket.socket], Awaitable[None]],
) -> None:
    """Accept connections forever, starting ``handler(sock)`` in *nursery* for each.

    Closes *listener* when cancelled.
    """
    with listener:
        while True:
            await trio.lowlevel.wait_readable(listener)
            while True:  # take every connection that is waiting, then wait again
                try:
                    connection, _ = listener.accept()
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno in _TRANSIENT_ERRNOS:
                        continue
                    if exc.errno in _CAPACITY_ERRNOS:
                        logger.warning("accept failed (%s); retrying in 0.1 s", exc.strerror)
                        await trio.sleep(0.1)
                        break
                    raise
                connection.setblocking(False)
                nursery.start_soon(handler, connection)
