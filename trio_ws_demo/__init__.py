"""trio_ws_demo: a Trio WebSocket broadcast server and echo test client.

The public API is re-exported here; the modules behind it are:

* :mod:`~trio_ws_demo.hub`: the socket-free broadcast hub and its slow-client policy;
* :mod:`~trio_ws_demo.rooms`: rooms by URL path, history, offsets and resume (also socket-free);
* :mod:`~trio_ws_demo.frames`: WebSocket frames encoded once per broadcast;
* :mod:`~trio_ws_demo.server`: the lifecycle (listen, serve, shut down), with
  :mod:`~trio_ws_demo.options`, :mod:`~trio_ws_demo.listen` (listening sockets,
  accept loop), :mod:`~trio_ws_demo.keepalive` (one task pings everyone) and
  :mod:`~trio_ws_demo.stats` (typed statistics);
* :mod:`~trio_ws_demo.frontdoor`: TLS, the request head, routing and refusals,
  with :mod:`~trio_ws_demo.http` (bounded head reader, responses),
  :mod:`~trio_ws_demo.handshake` (RFC 6455 and access checks) and
  :mod:`~trio_ws_demo.web` (chat page, /healthz, /metrics);
* :mod:`~trio_ws_demo.protocol`: the server's WebSocket protocol after the 101,
  sans-I/O on wsproto's frame parser, with the one close table;
* :mod:`~trio_ws_demo.connection`: one WebSocket connection and its catch-all,
  with :mod:`~trio_ws_demo.outbox` (what a client is sent, when: the backlog
  and its budget), :mod:`~trio_ws_demo.transport` (the one module that reads
  and writes a connection's socket) and :mod:`~trio_ws_demo.tls` (TLS through
  an SSLObject, from the handshake on);
* :mod:`~trio_ws_demo.backplane`: rooms shared through Redis;
* :mod:`~trio_ws_demo.client`: the echo client as a library function (on
  trio-websocket, loaded only by the client);
* :mod:`~trio_ws_demo.cli` and :mod:`~trio_ws_demo.logs`: the command line, a
  thin shell over the above (:mod:`~trio_ws_demo.cli.editor`: line editing
  for ``echo -i``).

The layers: sans-I/O (frames, http, handshake, protocol, hub, rooms: no socket,
tested by feeding them), the server's I/O around them (frontdoor, connection,
outbox, transport, tls, keepalive, listen, server, web, backplane), and the
client (client, cli).
"""

__version__ = "0.1.0"

from .client import ClientError as ClientError
from .client import EchoResult as EchoResult
from .client import run_client as run_client
from .hub import Hub as Hub
from .hub import HubStatistics as HubStatistics
from .hub import Inbox as Inbox
from .hub import InboxBudget as InboxBudget
from .hub import SlowClientPolicy as SlowClientPolicy
from .hub import Subscriber as Subscriber
from .server import BroadcastServer as BroadcastServer
from .server import ServerOptions as ServerOptions
from .server import ServerStartupError as ServerStartupError
from .server import serve as serve
from .stats import ServerStatistics as ServerStatistics

__all__ = [
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
    "__version__",
    "run_client",
    "serve",
]
