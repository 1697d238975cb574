"""trio-ws-demo.v1 has one owner: every frame the server sends, read back as the
client reads it, and no module but ``envelopes.py`` spelling a frame out.

The round trips pin the bytes too: each encoder's output is compared with the
JSON text the server has always sent, key order included.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from trio_ws_demo import envelopes
from trio_ws_demo.envelopes import (
    SUBPROTOCOL,
    BackplaneFrame,
    ErrorFrame,
    Frame,
    JoinedFrame,
    MessageFrame,
    PresenceFrame,
    ResumeFrame,
    decode,
)
from trio_ws_demo.frames import frame_message
from trio_ws_demo.hub import Inbox, InboxBudget, SlowClientPolicy
from trio_ws_demo.rooms import Room

PACKAGE = Path(__file__).resolve().parent.parent / "trio_ws_demo"


def test_the_name_is_one_constant() -> None:
    import trio_ws_demo.client
    import trio_ws_demo.rooms

    assert SUBPROTOCOL == "trio-ws-demo.v1"
    assert trio_ws_demo.rooms.SUBPROTOCOL is SUBPROTOCOL
    assert trio_ws_demo.client.ENVELOPES is SUBPROTOCOL


def test_joined_round_trip() -> None:
    text = envelopes.encode_joined("a/b", 7, "c0ffee00", 3)
    assert text == (
        '{"type": "joined", "room": "a/b", "offset": 7, "epoch": "c0ffee00", "history": 3}'
    )
    frame = decode(text)
    assert isinstance(frame, JoinedFrame) and frame.kind == "joined"
    assert (frame.epoch, frame.offset, frame.history, frame.start) == ("c0ffee00", 7, 3, 4)
    assert envelopes.is_greeting(text) and envelopes.unwrap(text) is None


def test_resume_round_trip() -> None:
    text = envelopes.encode_resume("", False, 12, "e1", 0)
    assert text == (
        '{"type": "resume", "room": "", "recovered": false, "offset": 12, "epoch": "e1", '
        '"keeps": 0}'
    )
    frame = decode(text)
    assert isinstance(frame, ResumeFrame)
    assert (frame.recovered, frame.offset, frame.epoch, frame.keeps_history) == (
        False, 12, "e1", False,
    )  # fmt: skip
    assert envelopes.is_greeting(text)
    kept = decode(envelopes.encode_resume("", True, 12, "e1", 50))
    assert isinstance(kept, ResumeFrame) and kept.recovered and kept.keeps_history


def test_message_round_trip_text_and_binary() -> None:
    text = envelopes.encode_message("r", 5, 1700000000.12345, "héllo")
    assert text == (
        '{"type": "message", "room": "r", "offset": 5, "time": 1700000000.123, '
        '"text": "h\\u00e9llo"}'
    )
    frame = decode(text)
    assert isinstance(frame, MessageFrame)
    assert (frame.offset, frame.message, frame.fields["time"]) == (5, "héllo", 1700000000.123)
    assert envelopes.unwrap(text) == "héllo"
    assert envelopes.carries(frame, "héllo") and not envelopes.carries(frame, b"h\xc3\xa9llo")

    binary = envelopes.encode_message("r", 6, 1.0, b"\x00\xff")
    assert binary == '{"type": "message", "room": "r", "offset": 6, "time": 1.0, "base64": "AP8="}'
    frame = decode(binary)
    assert isinstance(frame, MessageFrame) and frame.message == b"\x00\xff"
    assert envelopes.unwrap(binary) == b"\x00\xff"
    assert envelopes.carries(frame, b"\x00\xff") and not envelopes.carries(frame, "AP8=")
    assert not envelopes.is_greeting(binary)


def test_a_message_says_who_sent_it() -> None:
    stamped = envelopes.encode_message("r", 7, 2.0, "hi", "alice")
    assert stamped == (
        '{"type": "message", "room": "r", "offset": 7, "time": 2.0, "from": "alice", "text": "hi"}'
    )
    frame = decode(stamped)
    assert isinstance(frame, MessageFrame) and (frame.sender, frame.message) == ("alice", "hi")
    unstamped = decode(envelopes.encode_message("r", 8, 2.0, "hi"))
    assert isinstance(unstamped, MessageFrame) and unstamped.sender is None


def test_presence_round_trip() -> None:
    one = envelopes.encode_presence("r", ["alice"], [], 2, 100)
    assert one == (
        '{"type": "presence", "event": "join", "clients": 2, "joined": ["alice"], '
        '"left": [], "name": "alice", "room": "r"}'
    )
    frame = decode(one)
    assert isinstance(frame, PresenceFrame)
    assert (frame.joined, frame.left, frame.clients) == (["alice"], [], 2)

    many = json.loads(envelopes.encode_presence("r", ["a", "b", "c"], ["d"], 5, 2))
    assert many == {
        "type": "presence", "event": "changes", "clients": 5, "joined": ["a", "b"],
        "left": ["d"], "more": 1, "room": "r",
    }  # fmt: skip
    left = decode(envelopes.encode_presence("r", [], ["bob"], 0, 100))
    assert isinstance(left, PresenceFrame) and left.fields["event"] == "leave"


def test_backplane_round_trip() -> None:
    down = envelopes.encode_backplane("r", "e2", 9, up=False)
    assert down == '{"type": "backplane", "up": false, "room": "r", "epoch": "e2", "offset": 9}'
    frame = decode(down)
    assert isinstance(frame, BackplaneFrame)
    assert (frame.up, frame.recovered, frame.epoch, frame.offset) == (False, None, "e2", 9)

    back = envelopes.encode_backplane("r", "1700", 7, up=True, recovered=True)
    assert back == (
        '{"type": "backplane", "up": true, "recovered": true, "room": "r", "epoch": "1700", '
        '"offset": 7}'
    )
    frame = decode(back)
    assert isinstance(frame, BackplaneFrame) and frame.up and frame.recovered is True


def test_error_round_trip() -> None:
    text = envelopes.encode_error("r", "not delivered: Redis said OOM")
    assert text == '{"type": "error", "reason": "not delivered: Redis said OOM", "room": "r"}'
    frame = decode(text)
    assert isinstance(frame, ErrorFrame) and frame.reason == "not delivered: Redis said OOM"
    assert envelopes.unwrap(text) is None


def test_what_is_not_a_v1_frame() -> None:
    """Bytes, text that is not JSON, and JSON that is not an object are no frames;
    an object of an unknown or missing type is a plain Frame."""
    for message in (b'{"type": "joined"}', "hello", "[1, 2]", "3"):
        assert decode(message) is None
        assert envelopes.unwrap(message) == message
        assert not envelopes.is_greeting(message)
    unknown = decode('{"type": "later", "x": 1}')
    assert type(unknown) is Frame and unknown.kind == "later" and unknown.fields == {"x": 1}
    untyped = decode('{"type": 5, "x": 1}')
    assert type(untyped) is Frame and untyped.kind is None
    assert envelopes.unwrap('{"x": 1}') is None and not envelopes.carries(untyped, "x")


async def test_a_room_sends_what_the_client_reads() -> None:
    """Server encode -> client read through a Room: join, history, a live message,
    presence, a backplane notice and an error, each decoded into its kind."""
    room = Room("r", InboxBudget(), SlowClientPolicy.CLOSE, 10, 10**6)
    room.deliver("one")
    room.deliver(b"\x01")
    alice: Inbox[bytes] = Inbox()
    joined = room.join(alice, v1=True, name="alice")
    frames = [decode(_text(frame)) for frame in joined.frames]
    first = frames[0]
    assert isinstance(first, JoinedFrame) and (first.epoch, first.start) == (room.epoch, 0)
    assert [f.message for f in frames[1:] if isinstance(f, MessageFrame)] == ["one", b"\x01"]

    resumed = room.join(Inbox(), v1=True, since=(1, room.epoch))
    again = [decode(_text(frame)) for frame in resumed.frames]
    assert isinstance(again[0], ResumeFrame) and again[0].recovered
    assert [f.offset for f in again[1:] if isinstance(f, MessageFrame)] == [2]

    room.deliver("three")
    room.send_presence(0.0)
    room.notify_backplane(up=False)
    room.tell(alice, "not delivered: Redis said OOM")
    live = [decode(_text(await alice.receive())) for _ in range(alice.queued_messages)]
    message, presence, backplane, error = live
    assert isinstance(message, MessageFrame) and (message.offset, message.message) == (3, "three")
    assert isinstance(presence, PresenceFrame) and presence.joined == ["alice"]
    assert isinstance(backplane, BackplaneFrame) and not backplane.up
    assert (backplane.epoch, backplane.offset) == (room.epoch, 3)
    assert isinstance(error, ErrorFrame) and error.reason == "not delivered: Redis said OOM"


def _text(frame: bytes) -> str:
    message = frame_message(frame)
    assert isinstance(message, str)
    return message


# -- nobody else spells a v1 frame ---------------------------------------------------


def spellings(relative: str, source: str) -> list[str]:
    """Where *source* spells a v1 frame: the ``"type"`` key of a JSON object (a
    dict key, ``dict(type=...)``, a subscript, ``.get``/``.pop``/``.setdefault``,
    ``in``), or the subprotocol's name outside a docstring."""
    found: list[tuple[int, str]] = []
    tree = ast.parse(source, relative)
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }

    def is_type(node: ast.AST | None) -> bool:
        return isinstance(node, ast.Constant) and node.value == "type"

    for node in ast.walk(tree):
        hit = None
        if isinstance(node, ast.Dict) and any(is_type(key) for key in node.keys):
            hit = 'a {"type": ...} object'
        elif isinstance(node, ast.Subscript) and is_type(node.slice):
            hit = '["type"]'
        elif isinstance(node, ast.Call):
            func = node.func
            if (
                isinstance(func, ast.Attribute)
                and func.attr in ("get", "pop", "setdefault")
                and node.args
                and is_type(node.args[0])
            ):
                hit = f'.{func.attr}("type")'
            elif (
                isinstance(func, ast.Name)
                and func.id == "dict"
                and any(keyword.arg == "type" for keyword in node.keywords)
            ):
                hit = "dict(type=...)"
        elif isinstance(node, ast.Compare) and is_type(node.left):
            hit = '"type" in ...'
        elif (
            isinstance(node, ast.Constant)
            and node.value == SUBPROTOCOL
            and id(node) not in docstrings
        ):
            hit = repr(SUBPROTOCOL)
        if hit is not None:
            found.append((node.lineno, f"{relative}:{node.lineno} {hit}"))
    return [hit for _, hit in sorted(found)]


def spelled_outside(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative != "envelopes.py":
            found.extend(spellings(relative, path.read_text()))
    return found


def test_no_module_outside_envelopes_spells_a_v1_frame() -> None:
    assert spelled_outside(PACKAGE) == []


def test_the_spelling_check_can_fail() -> None:
    """What the package held before envelopes.py, one line of each kind, is found."""
    old = {
        "rooms.py": 'SUBPROTOCOL = "trio-ws-demo.v1"\nfirst = {"type": "joined", "room": r}\n',
        "backplane/link.py": 'room.tell(s, {"type": "error", "reason": why})\n',
        "client/session.py": 'kind = data.get("type") if data is not None else None\n',
        "cli/output.py": 'event = frame.pop("type")\nkind = frame["type"]\n',
        "server/x.py": 'ok = "type" in data\nframe = dict(type="presence")\n',
    }
    found = [hit for relative, source in old.items() for hit in spellings(relative, source)]
    assert found == [
        "rooms.py:1 'trio-ws-demo.v1'",
        'rooms.py:2 a {"type": ...} object',
        'backplane/link.py:1 a {"type": ...} object',
        'client/session.py:1 .get("type")',
        'cli/output.py:1 .pop("type")',
        'cli/output.py:2 ["type"]',
        'server/x.py:1 "type" in ...',
        "server/x.py:2 dict(type=...)",
    ]
    # A docstring may name the subprotocol.
    assert spellings("rooms.py", '"""Clients of trio-ws-demo.v1 get JSON."""\n') == []
    assert spellings("x.py", '"""trio-ws-demo.v1"""\n') == []
