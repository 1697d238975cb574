"""The ``trio-ws-demo.v1`` subprotocol: its name, every frame the server sends, and
how the client reads them.

This module is the format's one owner: no other module spells out a v1 frame
(``tests/test_envelopes.py`` walks the package to hold it to that). Pure: it
turns values into the JSON text of a frame and back, and does no I/O.

A v1 client gets JSON objects in text messages, each with a ``"type"``:

* ``joined``: first, after a join: ``room``, ``offset`` (the room's last one),
  ``epoch`` and ``history`` (how many messages follow, oldest first);
* ``resume``: first, after a join with ``?since=&epoch=``: ``room``,
  ``recovered`` (everything after the offset given follows), ``offset``,
  ``epoch`` and ``keeps`` (the history the server keeps, 0: none);
* ``message``: one message: ``room``, ``offset``, ``time`` (UNIX seconds, to
  the millisecond) and ``text``, or ``base64`` for a binary message;
* ``presence``: who came and went (coalesced): ``event`` (``join``, ``leave``
  or ``changes``), ``clients``, ``joined``, ``left``, ``name`` when one name
  changed, ``more`` when more names changed than a frame lists, ``room``;
* ``backplane``: the link to the other servers went down (``up`` false) or came
  back (``up`` true, ``recovered``: whether it continued where it left), with
  the room's ``room``, ``epoch`` and ``offset`` (offsets are in a new epoch);
* ``error``: about something this client did (``reason``, ``room``).

The encoders keep the keys in the order above: the bytes on the wire are what
they have always been. The readers are lenient, as a client must be: a frame
that is not a JSON object is not a v1 frame (:func:`decode` gives None), an
unknown ``type`` is a plain :class:`Frame`, and each field is read only when
asked for, with the same defaults the client has always used.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "GREETINGS",
    "MAX_PUBLISH_ID",
    "SUBPROTOCOL",
    "AckFrame",
    "BackplaneFrame",
    "ErrorFrame",
    "Frame",
    "JoinedFrame",
    "MessageFrame",
    "PresenceFrame",
    "PublishCommand",
    "ResumeFrame",
    "carries",
    "decode",
    "decode_publish",
    "encode_ack",
    "encode_backplane",
    "encode_error",
    "encode_joined",
    "encode_message",
    "encode_presence",
    "encode_publish",
    "encode_resume",
    "is_greeting",
    "unwrap",
]

#: The subprotocol that asks for JSON envelopes, offsets and resume.
SUBPROTOCOL = "trio-ws-demo.v1"
#: The kinds of a v1 server's first frame: a server that merely accepts the
#: first subprotocol offered (Node ``ws`` does) sends neither.
GREETINGS = ("joined", "resume")

# -- what the server sends ---------------------------------------------------------


def encode_joined(room: str, offset: int, epoch: str, history: int) -> str:
    """The first frame after a join: *history* messages follow, ending at *offset*."""
    return json.dumps(
        {"type": "joined", "room": room, "offset": offset, "epoch": epoch, "history": history}
    )


def encode_resume(room: str, recovered: bool, offset: int, epoch: str, keeps: int) -> str:
    """The first frame after a resume: whether everything missed follows (*recovered*)."""
    return json.dumps(
        {
            "type": "resume",
            "room": room,
            "recovered": recovered,
            "offset": offset,
            "epoch": epoch,
            "keeps": keeps,
        }
    )


def encode_message(
    room: str, offset: int, at: float, message: str | bytes, sender: str = ""
) -> str:
    """The envelope of one message sent at *at* (UNIX time) with its *offset*,
    by *sender* (``from``: the server's word for who sent it, never the
    client's; left out if unknown, as for messages kept before it was stamped)."""
    envelope: dict[str, object] = {
        "type": "message",
        "room": room,
        "offset": offset,
        "time": round(at, 3),
    }
    if sender:
        envelope["from"] = sender
    if isinstance(message, str):
        envelope["text"] = message
    else:
        envelope["base64"] = base64.b64encode(message).decode("ascii")
    return json.dumps(envelope)


def encode_presence(
    room: str, joined: Sequence[str], left: Sequence[str], clients: int, limit: int
) -> str:
    """Who came and went since the last presence frame: at most *limit* names each
    way, and how many more there were; *clients* is how many are in the room."""
    fields: dict[str, object] = {
        "type": "presence",
        "event": "join" if not left else "leave" if not joined else "changes",
        "clients": clients,
        "joined": list(joined[:limit]),
        "left": list(left[:limit]),
    }
    if len(joined) + len(left) == 1:
        fields["name"] = (joined or left)[0]
    if len(joined) > limit or len(left) > limit:
        fields["more"] = max(0, len(joined) - limit) + max(0, len(left) - limit)
    fields["room"] = room
    return json.dumps(fields)


def encode_backplane(
    room: str, epoch: str, offset: int, *, up: bool, recovered: bool | None = None
) -> str:
    """The link to the other servers went down or came back (*recovered*: whether
    the room continued where it left; only said when *up*)."""
    fields: dict[str, object] = {"type": "backplane", "up": up}
    if recovered is not None:
        fields["recovered"] = recovered
    fields.update(room=room, epoch=epoch, offset=offset)
    return json.dumps(fields)


def encode_error(room: str, reason: str) -> str:
    """About something this client did, e.g. a message Redis refused."""
    return json.dumps({"type": "error", "reason": reason, "room": room})


def encode_ack(room: str, identifier: str | int, epoch: str, offset: int) -> str:
    """Where a client's ``publish`` (with its *identifier*) landed: sent to it
    alone, once its message has its offset (or had it, for an *identifier*
    seen before: nothing was published again)."""
    return json.dumps(
        {"type": "ack", "id": identifier, "room": room, "epoch": epoch, "offset": offset}
    )


#: The longest ``id`` of a client's publish (and ``Idempotency-Key`` of a POST).
MAX_PUBLISH_ID = 128


def encode_publish(identifier: str, message: str | bytes) -> str:
    """A client's ``publish`` command: *message*, published once by *identifier*."""
    if isinstance(message, str):
        return json.dumps({"type": "publish", "id": identifier, "text": message})
    encoded = base64.b64encode(message).decode("ascii")
    return json.dumps({"type": "publish", "id": identifier, "base64": encoded})


@dataclass(frozen=True)
class PublishCommand:
    """A v1 client's ``{"type": "publish", "id": …, "text" | "base64": …}``."""

    identifier: str | int
    message: str | bytes


def decode_publish(message: str | bytes) -> PublishCommand | None:
    """A v1 client's publish command; None if *message* is not one (it is then
    an ordinary message). ValueError, with what to fix, for a malformed one."""
    if not isinstance(message, str) or not message.startswith("{") or "publish" not in message:
        return None  # the cheap test first: most messages are not commands
    data = _json_object(message)
    if data is None or data.get("type") != "publish":
        return None
    identifier = data.get("id")
    if isinstance(identifier, bool) or not isinstance(identifier, (str, int)):
        raise ValueError('a publish needs an "id": a string or an integer')
    if isinstance(identifier, str) and not 0 < len(identifier) <= MAX_PUBLISH_ID:
        raise ValueError(f'a publish "id" has 1 to {MAX_PUBLISH_ID} characters')
    if isinstance(data.get("text"), str):
        return PublishCommand(identifier, data["text"])
    if isinstance(data.get("base64"), str):
        try:
            return PublishCommand(identifier, base64.b64decode(data["base64"], validate=True))
        except ValueError:
            raise ValueError('a publish "base64" must be base64') from None
    raise ValueError('a publish needs "text" (a string) or "base64"')


# -- how the client reads them -----------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """A JSON object from a v1 server; a kind of its own when :attr:`kind` is known."""

    kind: str | None
    """The frame's ``type``; None if it has none that is a string."""
    fields: dict[str, Any]
    """Everything else the object holds, in its order."""


class JoinedFrame(Frame):
    @property
    def epoch(self) -> str:
        return str(self.fields.get("epoch"))

    @property
    def offset(self) -> int:
        return int(self.fields.get("offset", 0))

    @property
    def history(self) -> int:
        return int(self.fields.get("history", 0))

    @property
    def start(self) -> int:
        """The offset just before the history that follows."""
        return self.offset - self.history


class ResumeFrame(Frame):
    @property
    def recovered(self) -> bool:
        return bool(self.fields.get("recovered"))

    @property
    def epoch(self) -> str:
        return str(self.fields.get("epoch"))

    @property
    def offset(self) -> int:
        return int(self.fields.get("offset", 0))

    @property
    def keeps_history(self) -> bool:
        """Whether the server keeps any history (servers before ``keeps`` kept some)."""
        return bool(self.fields.get("keeps", 1) != 0)


class MessageFrame(Frame):
    @property
    def offset(self) -> int:
        return int(self.fields.get("offset", 0))

    @property
    def sender(self) -> str | None:
        """Who sent it, as the server says (``from``)."""
        value = self.fields.get("from")
        return value if isinstance(value, str) else None

    @property
    def message(self) -> str | bytes:
        """The message it carries: text, or the bytes of ``base64``."""
        if "text" in self.fields:
            return str(self.fields["text"])
        return base64.b64decode(str(self.fields.get("base64", "")))


class AckFrame(Frame):
    """Where this client's ``publish`` landed."""

    @property
    def identifier(self) -> object:
        return self.fields.get("id")

    @property
    def offset(self) -> int:
        return int(self.fields.get("offset", 0))


class PresenceFrame(Frame):
    @property
    def joined(self) -> list[str]:
        return list(self.fields.get("joined") or [])

    @property
    def left(self) -> list[str]:
        return list(self.fields.get("left") or [])

    @property
    def clients(self) -> object:
        """How many are in the room (``"?"`` if the frame does not say)."""
        return self.fields.get("clients", "?")


class BackplaneFrame(Frame):
    @property
    def up(self) -> bool:
        return bool(self.fields.get("up"))

    @property
    def recovered(self) -> object:
        """False if the server came back without continuing where it left."""
        return self.fields.get("recovered")

    @property
    def epoch(self) -> str:
        return str(self.fields.get("epoch"))

    @property
    def offset(self) -> int:
        return int(self.fields.get("offset", 0))


class ErrorFrame(Frame):
    @property
    def reason(self) -> str:
        return str(self.fields.get("reason", "the server reported an error"))


_KINDS: dict[str, type[Frame]] = {
    "joined": JoinedFrame,
    "resume": ResumeFrame,
    "message": MessageFrame,
    "presence": PresenceFrame,
    "backplane": BackplaneFrame,
    "error": ErrorFrame,
    "ack": AckFrame,
}


def _json_object(frame: str | bytes) -> dict[str, Any] | None:
    if not isinstance(frame, str):
        return None
    try:
        data = json.loads(frame)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def decode(frame: str | bytes) -> Frame | None:
    """The v1 frame a message holds; None if it is not a JSON object (binary,
    not JSON, or JSON of another shape)."""
    data = _json_object(frame)
    if data is None:
        return None
    kind = data.get("type")
    fields = {key: value for key, value in data.items() if key != "type"}
    if not isinstance(kind, str):
        return Frame(None, fields)
    return _KINDS.get(kind, Frame)(kind, fields)


def is_greeting(message: str | bytes) -> bool:
    """A v1 server's first frame: ``joined`` or ``resume``."""
    frame = decode(message)
    return frame is not None and frame.kind in GREETINGS


def unwrap(message: str | bytes) -> str | bytes | None:
    """The message inside an envelope; *message* itself if it is no JSON object;
    None for the other v1 frames."""
    frame = decode(message)
    if frame is None:
        return message
    return frame.message if isinstance(frame, MessageFrame) else None


def carries(frame: Frame | None, message: str | bytes) -> bool:
    """True if *frame* is a message envelope carrying *message*."""
    if not isinstance(frame, MessageFrame):
        return False
    if isinstance(message, str):
        return frame.fields.get("text") == message
    encoded = frame.fields.get("base64")
    return isinstance(encoded, str) and base64.b64decode(encoded) == message
