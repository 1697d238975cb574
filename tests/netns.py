"""Hosts made of Linux network namespaces, for partitions made with ``ip link``.

Topology (the root namespace gets nothing)::

    NAME-r  (redis-server, 10.77.0.1)  ─┐
    NAME-h1 (server 1, bp 10.77.0.11)  ─┼─ bridge br0 in NAME-br
    NAME-h2 (server 2, bp 10.77.0.12)  ─┤
    NAME-c  (clients, bp 10.77.0.100)  ─┘
    NAME-c ── f1 10.78.1.2 ⇄ fr 10.78.1.1 ── NAME-h1   (clients reach server 1)
    NAME-c ── f2 10.78.2.2 ⇄ fr 10.78.2.1 ── NAME-h2   (clients reach server 2)

``ip -n NAME-h1 link set bp down`` cuts server 1 off from Redis (and from
server 2), while its clients, on their own link, stay connected.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

REDIS_HOST = "10.77.0.1"
REDIS_PORT = 6379
SERVER_PORT = 8000


def unavailable() -> str | None:
    """Why namespaces cannot be built here, or None."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    for tool in ("ip", "redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    probe = f"twdprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace ({made.stderr.strip()})"
    subprocess.run(["ip", "netns", "del", probe], check=False)
    return None


@dataclass(frozen=True)
class Hosts:
    name: str

    def ns(self, role: str) -> str:
        return f"{self.name}-{role}"

    def exec_in(self, role: str) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.ns(role))

    def server_host(self, index: int) -> str:
        return f"10.78.{index + 1}.1"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextmanager
def hosts(name: str | None = None) -> Iterator[Hosts]:
    """Build the namespaces, and delete them (and every link in them) after."""
    made = Hosts(name or f"twd{os.getpid()}")
    roles = ["br", "r", "h1", "h2", "c"]
    try:
        for role in roles:
            _ip("netns", "add", made.ns(role))
            _ip("-n", made.ns(role), "link", "set", "lo", "up")
        br = made.ns("br")
        _ip("-n", br, "link", "add", "br0", "type", "bridge")
        _ip("-n", br, "link", "set", "br0", "up")
        for role, interface, address in [
            ("r", "bp", f"{REDIS_HOST}/24"),
            ("h1", "bp", "10.77.0.11/24"),
            ("h2", "bp", "10.77.0.12/24"),
            ("c", "bp", "10.77.0.100/24"),
        ]:
            _ip("-n", br, "link", "add", f"to-{role}", "type", "veth", "peer", "name", interface)
            _ip("-n", br, "link", "set", interface, "netns", made.ns(role))
            _ip("-n", br, "link", "set", f"to-{role}", "master", "br0", "up")
            _ip("-n", made.ns(role), "addr", "add", address, "dev", interface)
            _ip("-n", made.ns(role), "link", "set", interface, "up")
        for index in (1, 2):
            client, server = made.ns("c"), made.ns(f"h{index}")
            _ip("-n", client, "link", "add", f"f{index}", "type", "veth", "peer", "name", "fr")
            _ip("-n", client, "link", "set", "fr", "netns", server)
            _ip("-n", client, "addr", "add", f"10.78.{index}.2/30", "dev", f"f{index}")
            _ip("-n", client, "link", "set", f"f{index}", "up")
            _ip("-n", server, "addr", "add", f"10.78.{index}.1/30", "dev", "fr")
            _ip("-n", server, "link", "set", "fr", "up")
        yield made
    finally:
        for role in roles:
            subprocess.run(["ip", "netns", "del", made.ns(role)], check=False, capture_output=True)
