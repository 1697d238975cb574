"""Who the client is behind a reverse proxy: ``--trusted-proxy`` and ``X-Forwarded-For``.

Behind nginx every connection comes from nginx, so a log line, a refusal or an
access line that names the socket's peer names the proxy. A proxy we trust
says who its client was in ``X-Forwarded-For``, appending the address it saw to
whatever the request carried (nginx: ``$proxy_add_x_forwarded_for``). Anything
left of that is what the client (or another proxy) wrote, and a client may
write anything there.

The rule (:meth:`TrustedProxies.client`), the one nginx's ``real_ip_recursive
on`` and most frameworks follow:

* the header counts only when the socket's peer is a trusted proxy; from
  anyone else it is ignored (a client could name any address);
* every ``X-Forwarded-For`` line, in order, is one comma-separated list;
* walking it from the right, each address a trusted proxy added is skipped; the
  first address that is not itself trusted is the client; if all of them are
  trusted, the leftmost is (a request made from the proxy's own machine);
* what lies left of the client is never read, so a client's forged entries
  cannot choose the answer;
* an entry that is not a plain IP address (empty, a name, ``unknown``, a port,
  a scoped IPv6 address), met before the client is found, makes the header
  malformed (ValueError): the peer's address stands, and the caller says so at DEBUG.

IPv4-mapped IPv6 addresses (``::ffff:127.0.0.1``, what a dual-stack socket
reports) are compared as the IPv4 address they carry.

The PROXY protocol is not supported: ``X-Forwarded-For`` is what nginx sends
over HTTP with one directive, and the PROXY protocol would change how every
connection's first bytes are read.

Pure functions of strings: no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Address", "Network", "TrustedProxies", "parse_address", "parse_network"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_network(text: str) -> Network:
    """One ``--trusted-proxy``: an address (``127.0.0.1``, ``::1``) or a network
    (``10.0.0.0/8``, ``fd00::/8``). ValueError, with what to write instead, for
    anything else (a host name, host bits set under the mask)."""
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            raise ValueError(
                f"{text!r} is not an IP address or network; write e.g. 127.0.0.1, "
                "10.0.0.0/8 or fd00::/8"
            ) from None
        raise ValueError(f"{text!r} has host bits set; did you mean {loose}?") from exc


def parse_address(text: str) -> Address | None:
    """*text* as a plain IP address (surrounding spaces allowed), IPv4-mapped
    IPv6 as IPv4; None if it is not one (a scoped IPv6 address is not: a zone
    names an interface of another machine, and its text is anything)."""
    text = text.strip()
    if not text or "%" in text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True)
class TrustedProxies:
    """The ``--trusted-proxy`` networks; empty (the default) trusts nobody."""

    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, texts: Iterable[str]) -> TrustedProxies:
        """From the command line's values (ValueError for a bad one)."""
        return cls(tuple(parse_network(text) for text in texts))

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: Address) -> bool:
        return any(address.version == n.version and address in n for n in self.networks)

    def client(self, peer: str, forwarded_for: Iterable[str]) -> Address | None:
        """The client behind *peer* (the socket's IP address, as text), read
        from the ``X-Forwarded-For`` lines *forwarded_for* by the rule in this
        module's docstring; None if the peer's own address stands (no header,
        or an untrusted peer). ValueError, saying which entry, for a header
        from a trusted peer that the rule cannot read."""
        if not self.networks:
            return None
        lines = list(forwarded_for)
        address = parse_address(peer)
        if not lines or address is None or not self.trusts(address):
            return None
        entries = ",".join(lines).split(",")
        for text in reversed(entries):
            hop = parse_address(text)
            if hop is None:
                raise ValueError(f"X-Forwarded-For entry {text.strip()!r} is not an IP address")
            if not self.trusts(hop):
                return hop
        return parse_address(entries[0])
