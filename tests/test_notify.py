"""systemd ``Type=notify``: a real ``serve`` process tells $NOTIFY_SOCKET READY=1,
WATCHDOG=1 and STOPPING=1; the shipped unit (docs/trio-ws-demo.service) and
Dockerfile (docs/Dockerfile) say what they should."""

from __future__ import annotations

import logging
import os
import shlex
import signal
from pathlib import Path

import pytest
import trio

from trio_ws_demo.cli import build_parser
from trio_ws_demo.cli.flags import TOKEN_ENV
from trio_ws_demo.cli.jwtkeys import JWT_KEY_ENV, JWT_PUBLIC_KEY_ENV
from trio_ws_demo.cli.serve import REDIS_ENV
from trio_ws_demo.server.notify import Notifier

from .processes import listening_port, run_cli

TIMEOUT = 20
DOCS = Path(__file__).resolve().parent.parent / "docs"


async def receive_until(sock: trio.socket.SocketType, wanted: str) -> list[str]:
    """Datagrams up to and including the first that equals *wanted*."""
    seen = []
    while True:
        seen.append((await sock.recv(4096)).decode())
        if seen[-1] == wanted:
            return seen


async def serve_and_watch(address: str, name: str) -> None:
    """READY=1 once it listens, WATCHDOG=1 while it runs, STOPPING=1 after SIGTERM."""
    with trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_DGRAM) as sock:
        await sock.bind(address)
        env = {"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "200000"}
        with trio.fail_after(TIMEOUT):
            async with run_cli("serve", "--port", "0", env=env) as serve:
                await listening_port(serve)
                assert await receive_until(sock, "READY=1") == ["READY=1"]
                # 0.1 s apart: a few while it runs, and nothing else.
                assert await receive_until(sock, "WATCHDOG=1") == ["WATCHDOG=1"]
                assert await receive_until(sock, "WATCHDOG=1") == ["WATCHDOG=1"]
                serve.process.send_signal(signal.SIGTERM)
                before = await receive_until(sock, "STOPPING=1")
                assert set(before) <= {"WATCHDOG=1", "STOPPING=1"}, before
                assert await serve.process.wait() == 0
                assert "WARNING" not in await serve.stderr()


async def test_serve_notifies_a_path_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    await serve_and_watch(path, path)


async def test_serve_notifies_an_abstract_socket(tmp_path: Path) -> None:
    name = f"trio-ws-demo-test-{os.getpid()}-{tmp_path.name}"
    await serve_and_watch("\0" + name, "@" + name)


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier({"WATCHDOG_USEC": "200000"})
    assert notifier.address is None and notifier.watchdog_interval is None
    notifier.send("READY=1")  # no socket, no error


def test_a_watchdog_for_another_pid_is_not_ours() -> None:
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}
    assert Notifier(env).watchdog_interval is None
    env["WATCHDOG_PID"] = str(os.getpid())
    assert Notifier(env).watchdog_interval == 0.1


def test_a_failed_send_warns_once_and_raises_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody")})
    with caplog.at_level(logging.WARNING, "trio_ws_demo.server"):
        notifier.send("READY=1")
        notifier.send("STOPPING=1")
    notifier.close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "cannot notify the service manager" in warnings[0].getMessage()


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit's sections: each key's values, in order (keys repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    section: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = sections.setdefault(line.strip("[]"), {})
        else:
            key, value = line.split("=", 1)
            section.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_the_unit_is_type_notify_and_its_command_line_parses() -> None:
    unit = read_unit(DOCS / "trio-ws-demo.service")
    service = {key: values[-1] for key, values in unit["Service"].items()}
    assert "Install" in unit and "Unit" in unit
    assert service["Type"] == "notify"
    assert float(service["WatchdogSec"]) > 0
    assert service["KillSignal"] == "SIGTERM"
    assert service["Restart"] == "on-failure"
    assert service["DynamicUser"] == "yes"
    command = shlex.split(service["ExecStart"])
    assert command[1:4] == ["-m", "trio_ws_demo", "serve"], command
    args = build_parser().parse_args(command[3:])
    # Longer than the drain and shutdown it asks for, so systemd never SIGKILLs a clean stop.
    assert float(service["TimeoutStopSec"]) > args.drain_window + args.shutdown_timeout
    # Each TRIO_WS_DEMO_ name it sets is one that serve reads.
    known = {TOKEN_ENV, JWT_KEY_ENV, JWT_PUBLIC_KEY_ENV, REDIS_ENV}
    names = [shlex.split(line)[0].split("=", 1)[0] for line in unit["Service"]["Environment"]]
    ours = [name for name in names if name.startswith("TRIO_WS_DEMO_")]
    assert ours and set(ours) <= known, names


def test_the_dockerfile_names_what_it_should() -> None:
    lines = (DOCS / "Dockerfile").read_text().splitlines()
    instructions = {line.split()[0] for line in lines if line.strip() and line[0] != "#"}
    assert {"FROM", "USER", "HEALTHCHECK", "STOPSIGNAL", "EXPOSE", "CMD"} <= instructions
    text = "\n".join(lines)
    assert "FROM python:3.11-slim" in text
    assert "STOPSIGNAL SIGTERM" in text and "EXPOSE 8080" in text
    assert "/livez" in text and "pip install" in text
