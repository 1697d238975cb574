"""The client side: the echo client and its events, on trio-websocket.

The names below are what ``trio_ws_demo.client`` always exported.
"""

from ..envelopes import SUBPROTOCOL as ENVELOPES
from ..errors import ClientError as ClientError
from .session import DEFAULT_MESSAGE as DEFAULT_MESSAGE
from .session import DEFAULT_URL as DEFAULT_URL
from .session import Closed as Closed
from .session import ControlFrame as ControlFrame
from .session import EchoResult as EchoResult
from .session import Event as Event
from .session import Message as Message
from .session import Notice as Notice
from .session import Opened as Opened
from .session import Ponged as Ponged
from .session import Presence as Presence
from .session import Received as Received
from .session import Reconnecting as Reconnecting
from .session import Resumed as Resumed
from .session import Sent as Sent
from .session import Target as Target
from .session import parse_url as parse_url
from .session import run_client as run_client
from .session import run_interactive as run_interactive

__all__ = [
    "DEFAULT_MESSAGE",
    "DEFAULT_URL",
    "ENVELOPES",
    "ClientError",
    "Closed",
    "ControlFrame",
    "EchoResult",
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
