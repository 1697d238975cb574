"""trio_ws_demo: a Trio WebSocket broadcast server and echo test client.

The public API is re-exported here; the modules behind it are:

* :mod:`~trio_ws_demo.hub`: the socket-free broadcast hub with bounded inboxes;
* :mod:`~trio_ws_demo.frames`: WebSocket frames encoded once per broadcast;
* :mod:`~trio_ws_demo.server`: listeners, the front door, shutdown; with
  :mod:`~trio_ws_demo.listen` (accept loop), :mod:`~trio_ws_demo.handshake`
  (bounded request head, RFC 6455 and access checks), :mod:`~trio_ws_demo.web`
  (chat page, /healthz, /metrics), :mod:`~trio_ws_demo.session` (one
  connection's tasks) and :mod:`~trio_ws_demo.wire` (the stream shared with
  trio-websocket, and the synchronous fast path);
* :mod:`~trio_ws_demo.client`: the echo client as a library function;
* :mod:`~trio_ws_demo.cli` and :mod:`~trio_ws_demo.logs`: the command line, a
  thin shell over the above.
"""

__version__ = "0.1.0"

from .client import ClientError as ClientError
from .client import EchoResult as EchoResult
from .client import run_client as run_client
from .hub import Hub as Hub
from .hub import HubStatistics as HubStatistics
from .hub import InboxBudget as InboxBudget
from .hub import SlowClientPolicy as SlowClientPolicy
from .hub import Subscription as Subscription
from .server import BroadcastServer as BroadcastServer
from .server import ServerOptions as ServerOptions
from .server import ServerStartupError as ServerStartupError
from .server import serve as serve

__all__ = [
    "BroadcastServer",
    "ClientError",
    "EchoResult",
    "Hub",
    "HubStatistics",
    "InboxBudget",
    "ServerOptions",
    "ServerStartupError",
    "SlowClientPolicy",
    "Subscription",
    "__version__",
    "run_client",
    "serve",
]
