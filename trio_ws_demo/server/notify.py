"""systemd ``Type=notify``: tell the service manager when the server is ready,
when it stops, and that it is alive (``sd_notify(3)``, without libsystemd).

With ``$NOTIFY_SOCKET`` set, :class:`Notifier` sends one datagram on an
``AF_UNIX``/``SOCK_DGRAM`` socket for each of ``READY=1`` (listening),
``STOPPING=1`` (shutdown begins) and, every half of ``$WATCHDOG_USEC``,
``WATCHDOG=1``. A path starting with ``@`` is in the abstract namespace. Sends
never block (the socket is non-blocking, so ``STOPPING=1`` goes out from the
synchronous shutdown path too) and never raise: the first failure logs one
WARNING, and the server goes on. Without ``$NOTIFY_SOCKET`` it does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

import trio

__all__ = ["Notifier"]

logger = logging.getLogger("trio_ws_demo.server")


class Notifier:
    """The service manager's notification socket, read from *environ* (default:
    ``os.environ``); every method is a no-op when it names none."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        path = environ.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        self._path = path
        if path.startswith("@"):
            self.address = "\0" + path[1:]  # the abstract namespace
        elif path:
            self.address = path
        self.watchdog_interval: float | None = None
        """Seconds between ``WATCHDOG=1`` (half of ``$WATCHDOG_USEC``), if asked for."""
        pid = environ.get("WATCHDOG_PID")
        for_us = not pid or pid == str(os.getpid())
        try:
            usec = int(environ.get("WATCHDOG_USEC", ""))
        except ValueError:
            usec = 0
        if self.address is not None and usec > 0 and for_us:
            self.watchdog_interval = usec / 2 / 1_000_000
        self._socket: socket.socket | None = None
        self._warned = False

    def send(self, state: str) -> None:
        """Send *state* (``READY=1``...) as one datagram; never blocks nor raises."""
        if self.address is None:
            return
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.setblocking(False)
            self._socket.sendto(state.encode(), self.address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                logger.warning(
                    "cannot notify the service manager (%s): %s",
                    self._path,
                    exc,
                    extra={"event": "notify_failed"},
                )

    async def watchdog(self) -> None:
        """Send ``WATCHDOG=1`` every half of ``$WATCHDOG_USEC``, until cancelled."""
        if self.watchdog_interval is None:
            return
        while True:
            self.send("WATCHDOG=1")
            await trio.sleep(self.watchdog_interval)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
