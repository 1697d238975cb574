"""Room names as a person types them: a trailing / names the same room, and
letters of any language work end to end (NFC, percent-encoded on the wire and
in the server's log)."""

from __future__ import annotations

import json

import trio

from .processes import listening_port, run_cli

TIMEOUT = 20


async def _events(*args: str) -> list[dict[str, object]]:
    async with run_cli("echo", "--json", *args) as cli:
        lines = await cli.rest()
        assert await cli.process.wait() == 0, await cli.stderr()
    return [json.loads(line) for line in lines]


async def test_cafe_and_a_trailing_slash_name_one_room_end_to_end() -> None:
    with trio.fail_after(TIMEOUT):
        async with run_cli("serve", "--port", "0", "--history", "10") as serve:
            base = f"ws://127.0.0.1:{await listening_port(serve)}"
            first = await _events(f"{base}/café", "bonjour")
            # Typed with a combining accent and a trailing slash: the same room.
            again = await _events(f"{base}/cafe\u0301/", "encore")
            ops = await _events(f"{base}/ops/", "up")
            serve.interrupt()
            log = await serve.stderr()
    joined = [next(e for e in run if e["event"] == "joined") for run in (first, again, ops)]
    assert [(e["room"], e["history"]) for e in joined] == [("café", 0), ("café", 1), ("ops", 0)]
    assert [e["text"] for e in again if e["event"] == "message"] == ["bonjour", "encore"]
    assert "path /caf%C3%A9," in log  # logged percent-encoded, as it came
    assert "café" not in log
