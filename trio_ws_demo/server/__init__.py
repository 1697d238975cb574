"""The server side: every module here does Trio I/O for the broadcast server.

:mod:`.lifecycle` builds the server (the one place that knows about the Redis
backplane) and owns its tasks; :mod:`.frontdoor` reads and routes each request
head; :mod:`.connection` runs one WebSocket through the sans-I/O protocol of the
top level, and :mod:`.outbox` writes every byte to it; :mod:`.publish` and
:mod:`.web` answer plain HTTP. The names below are what ``trio_ws_demo.server``
always exported.
"""

from ..errors import ServerStartupError as ServerStartupError
from .lifecycle import DEFAULT_HOST as DEFAULT_HOST
from .lifecycle import DEFAULT_PORT as DEFAULT_PORT
from .lifecycle import BroadcastServer as BroadcastServer
from .lifecycle import serve as serve
from .options import ServerOptions as ServerOptions

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "BroadcastServer",
    "ServerOptions",
    "ServerStartupError",
    "serve",
]
