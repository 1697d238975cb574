"""`echo -i` never lets a peer drive the user's terminal (finding T10).

The real ``python -m trio_ws_demo echo -i --resume`` runs in tmux against a real
server. The server itself now refuses such names at the handshake, so the
hostile name arrives the one way left: as a member on another process (what
``--redis`` presence reports, here written into the room as the shared
presence reader would; a process of an older version, or anything else that
can write to that Redis, does not check names). The client must not trust the
server's words either: it escapes every name it prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

from trio_ws_demo import BroadcastServer

from .conftest import url_of
from .terminal import Terminal

TIMEOUT = 20

EVIL = "\x1b]0;pwned\x07\x1b[2J\x1b[31mEVIL\u202egnp.exe"
FRIENDLY = "Zoë 🙂 山田"


def arrives_from_another_process(server: BroadcastServer, room_name: str, name: str) -> None:
    room = server.rooms.get(room_name)
    assert room is not None
    room.remote_members[f"elsewhere:{name}"] = (name, time.time())
    room.presence_changed(joined=[name])


async def test_presence_names_are_printed_escaped(
    server: BroadcastServer, terminal_factory: Callable[..., Terminal]
) -> None:
    terminal = terminal_factory(url_of(server, "/en"), None, "--resume")
    with trio.fail_after(TIMEOUT):
        await terminal.shows("Connection opened")
        # Its own join first: a name in the same presence frame would be coalesced
        # into "2 joined" (frames go out once a second at most), and not shown.
        await terminal.shows("joined (1 here)")
        arrives_from_another_process(server, "en", EVIL)
        await terminal.shows(r"! \x1b]0;pwned\x07\x1b[2J\x1b[31mEVIL\u202egnp.exe joined (2 here)")
        # Ordinary text, non-ASCII letters and emoji, prints as it is.
        arrives_from_another_process(server, "en", FRIENDLY)
        screen = await terminal.shows(f"! {FRIENDLY} joined (3 here)")
        terminal.keys("C-d")
        await terminal.matches(r"EXIT=\d")
    seen = terminal._seen  # every byte the program wrote to the terminal
    for raw in (b"\x1b]0;pwned", b"\x1b[2J", b"\x1b[31mEVIL", "\u202e".encode()):
        assert raw not in seen, raw
    assert FRIENDLY in screen
