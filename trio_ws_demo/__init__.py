"""trio_ws_demo: a Trio WebSocket broadcast server and echo test client.

The public API is re-exported here. The layout is the architecture, and
``tests/test_layers.py`` holds it to its rule:

* **the top level is the sans-I/O core**, tested by feeding it bytes and values:
  ``frames`` (frames encoded once, headers read in passing), ``protocol`` (the
  server's WebSocket after the 101, on wsproto's frame parser, with the one close
  table), ``http`` (request heads and responses), ``handshake`` (RFC 6455 checks
  and the 101), ``access`` (who may connect, publish or read: one admission),
  ``redact`` (what may reach a log or a terminal), ``tokens`` (signed tokens, the
  only PyJWT user), ``envelopes`` (the ``trio-ws-demo.v1`` format: its name, every
  frame the server sends, how the client reads them), ``hub`` (pure fan-out),
  ``rooms`` (rooms, history, offsets, presence), ``broker`` (where every message
  goes first: the ``Broker`` protocol and ``LocalBroker``), ``budget`` (the
  process's memory budget), ``reasons`` (the fixed vocabulary of refusals),
  ``stats`` (typed statistics) and ``errors`` (the exceptions, one tree);
* :mod:`~trio_ws_demo.server`: the server's Trio I/O (lifecycle, options, listen,
  frontdoor, connection, outbox, transport, tls, keepalive, presence, web, publish);
* :mod:`~trio_ws_demo.backplane`: rooms shared through Redis (the only coredis user),
  the other broker, built only by the server's lifecycle;
* :mod:`~trio_ws_demo.client`: the echo client as a library, on trio-websocket;
* :mod:`~trio_ws_demo.cli`: the command line, a thin shell over the rest (it alone
  prints, configures logging, with :mod:`~trio_ws_demo.cli.logs`, and calls trio.run).
"""

__version__ = "0.1.0"

from .access import AccessPolicy as AccessPolicy
from .client import EchoResult as EchoResult
from .client import run_client as run_client
from .errors import BackplaneUnavailable as BackplaneUnavailable
from .errors import ClientError as ClientError
from .errors import ServerStartupError as ServerStartupError
from .errors import TokenError as TokenError
from .errors import TrioWsDemoError as TrioWsDemoError
from .hub import Hub as Hub
from .hub import HubStatistics as HubStatistics
from .hub import Inbox as Inbox
from .hub import InboxBudget as InboxBudget
from .hub import SlowClientPolicy as SlowClientPolicy
from .hub import Subscriber as Subscriber
from .server import BroadcastServer as BroadcastServer
from .server import ServerOptions as ServerOptions
from .server import serve as serve
from .stats import ServerStatistics as ServerStatistics

__all__ = [
    "AccessPolicy",
    "BackplaneUnavailable",
    "BroadcastServer",
    "ClientError",
    "EchoResult",
    "Hub",
    "HubStatistics",
    "Inbox",
    "InboxBudget",
    "ServerOptions",
    "ServerStartupError",
    "ServerStatistics",
    "SlowClientPolicy",
    "Subscriber",
    "TokenError",
    "TrioWsDemoError",
    "__version__",
    "run_client",
    "serve",
]
