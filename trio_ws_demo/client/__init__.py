"""The client side: the echo client, the interactive session and their events, on
trio-websocket.

Each module does one job:

    events.py       what ``on_event`` hands out, and the EchoResult a run returns
    session.py      one connection: TCP/TLS, handshake, close, and the error wording
    resume.py       where the client is in the stream; reconnecting with backoff
    echo.py         run_client: send, await each echo, listen
    interactive.py  run_interactive: lines and slash commands

The names below are what ``trio_ws_demo.client`` always exported.
"""

from ..envelopes import SUBPROTOCOL as ENVELOPES
from ..errors import ClientError as ClientError
from .echo import DEFAULT_MESSAGE as DEFAULT_MESSAGE
from .echo import run_client as run_client
from .events import Closed as Closed
from .events import ControlFrame as ControlFrame
from .events import Echoed as Echoed
from .events import EchoResult as EchoResult
from .events import Event as Event
from .events import Message as Message
from .events import Notice as Notice
from .events import Opened as Opened
from .events import Ponged as Ponged
from .events import Presence as Presence
from .events import Received as Received
from .events import Reconnecting as Reconnecting
from .events import Resumed as Resumed
from .events import Sent as Sent
from .interactive import run_interactive as run_interactive
from .session import DEFAULT_URL as DEFAULT_URL
from .session import Target as Target
from .session import parse_url as parse_url

__all__ = [
    "DEFAULT_MESSAGE",
    "DEFAULT_URL",
    "ENVELOPES",
    "ClientError",
    "Closed",
    "ControlFrame",
    "EchoResult",
    "Echoed",
    "Event",
    "Message",
    "Notice",
    "Opened",
    "Ponged",
    "Presence",
    "Received",
    "Reconnecting",
    "Resumed",
    "Sent",
    "Target",
    "parse_url",
    "run_client",
    "run_interactive",
]
