"""The article's own Node ``client.js`` against our server.

It sends and closes at once; the echo must still arrive (RFC 6455 §5.5.1).
Needs ``node`` and ``npm ci --prefix tests/node``; CI installs both, and
under CI a missing Node is a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import trio

from trio_ws_demo import BroadcastServer

from .conftest import url_of

NODE_DIR = Path(__file__).parent / "node"
NODE = shutil.which("node")
HAVE_WS = (NODE_DIR / "node_modules" / "ws").is_dir()

if not (NODE and HAVE_WS) and not os.environ.get("CI"):
    pytest.skip(
        "needs node and `npm ci --prefix tests/node` (CI installs them)", allow_module_level=True
    )


async def test_the_articles_client_gets_its_echo(server: BroadcastServer) -> None:
    assert NODE and HAVE_WS, "CI must install node and tests/node (see .ci/run)"
    with trio.fail_after(20):
        done = await trio.run_process(
            [NODE, str(NODE_DIR / "client.js"), url_of(server)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().splitlines() == [
        "Connection opened",
        "Client sends: Hello, WebSocket!",
        "Server sent:  Hello, WebSocket!",
        "Connection closed",
    ]
