"""Defaults that never open the server by mistake (issue 25, section 6).

- An empty secret (``--token ""``, ``--jwt-key ""``, ``--jwt-public-key ""`` or
  its ``$TRIO_WS_DEMO_*`` variable, as an unset variable in a unit file gives)
  once started a server open to everyone, with no word. Now: exit 2 and one line;
  the library refuses it with a ValueError.
- The ``Listening on`` line names the authentication mode; an open server on a
  non-loopback address says, once, that anyone can connect.
- R15: ``--jwt-key`` with ``--jwt-public-key`` refused every HS256 token.
- R17: accept() errors that Linux says to retry stopped the whole server.

Each test here fails on fb55a7f.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import os
import socket
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jwt
import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from websockets.exceptions import InvalidStatus
from websockets.trio.client import connect

import trio_ws_demo.server.lifecycle
from trio_ws_demo import AccessPolicy, ServerOptions

from .conftest import StartServer, url_of
from .processes import run_cli

TIMEOUT = 15
KEY = "k" * 32
SECRET_ENVS = ("TRIO_WS_DEMO_TOKEN", "TRIO_WS_DEMO_JWT_KEY", "TRIO_WS_DEMO_JWT_PUBLIC_KEY")


@pytest.fixture(autouse=True)
def _no_ambient_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The servers below see only the secrets a test gives them."""
    for name in SECRET_ENVS:
        monkeypatch.delenv(name, raising=False)


def _public_pem(private: Any) -> bytes:
    pem: bytes = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def public_key_file(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> str:
    path = tmp_path / "public.pem"
    path.write_bytes(_public_pem(rsa_key))
    return str(path)


def signed(key: object, algorithm: str) -> str:
    claims = {"exp": int(time.time()) + 60, "rooms": {"**": "rw"}}
    with warnings.catch_warnings():  # HS512 with a 32-byte key, on purpose
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(claims, key, algorithm=algorithm)  # type: ignore[arg-type]


async def status_of(url: str) -> int:
    try:
        async with connect(url, proxy=None):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


# -- empty secrets ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "env", "named"),
    [
        (["--token", ""], {}, "--token is empty"),
        (["--token", "   "], {}, "--token is empty"),
        (["--jwt-key", ""], {}, "--jwt-key is empty"),
        (["--jwt-public-key", ""], {}, "--jwt-public-key is empty"),
        ([], {"TRIO_WS_DEMO_TOKEN": ""}, "$TRIO_WS_DEMO_TOKEN is set but empty"),
        ([], {"TRIO_WS_DEMO_JWT_KEY": ""}, "$TRIO_WS_DEMO_JWT_KEY is set but empty"),
        (
            [],
            {"TRIO_WS_DEMO_JWT_PUBLIC_KEY": ""},
            "$TRIO_WS_DEMO_JWT_PUBLIC_KEY is set but empty",
        ),
        # One empty secret is refused even beside a good one: it is a mistake.
        (["--token", "", "--jwt-key", KEY], {}, "--token is empty"),
    ],
)
async def test_an_empty_secret_is_refused_with_one_line_and_exit_2(
    flags: list[str], env: dict[str, str], named: str
) -> None:
    with trio.fail_after(TIMEOUT):
        async with run_cli("serve", "--port", "0", *flags, env=env) as serve:
            assert await serve.process.wait() == 2
            out = await serve.rest()
            err = await serve.stderr()
    assert out == []  # never listened
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {named}, which would let anyone in; "), err
    assert "Traceback" not in err
    assert "leave it out" in err or "unset it" in err  # what to do instead


async def test_a_flag_wins_over_an_empty_variable() -> None:
    """`--token X` with `TRIO_WS_DEMO_TOKEN=` set and empty: the flag is the secret."""
    with trio.fail_after(TIMEOUT):
        env = {"TRIO_WS_DEMO_TOKEN": ""}
        async with run_cli("serve", "--port", "0", "--token", "s3cret", env=env) as serve:
            line = await serve.readline()
            assert line.endswith(", auth: shared token"), line
            port = int(line.split()[2].rsplit(":", 1)[1])
            assert await status_of(f"ws://127.0.0.1:{port}/") == 401
            assert await status_of(f"ws://127.0.0.1:{port}/?token=s3cret") == 101


@pytest.mark.parametrize(
    "access",
    [{"token": ""}, {"token": " "}, {"jwt_secret": ""}, {"jwt_public_key": b""}],
    ids=["token", "blank token", "jwt_secret", "jwt_public_key"],
)
def test_the_library_refuses_an_empty_secret(access: dict[str, Any]) -> None:
    name = next(iter(access))
    with pytest.raises(ValueError, match=f"^{name} is empty"):
        ServerOptions(access=AccessPolicy(**access))


# -- the startup line and the warning -------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "mode"),
    [
        ([], "open"),
        (["--token", "s3cret"], "shared token"),
        (["--jwt-key", KEY], "signed tokens (HS256)"),
        (["--jwt-public-key", "PUBLIC"], "signed tokens (RS256, ES256)"),
        (["--jwt-key", KEY, "--jwt-public-key", "PUBLIC"], "signed tokens (HS256, RS256, ES256)"),
        (["--token", "s3cret", "--jwt-key", KEY], "shared token + signed tokens (HS256)"),
    ],
)
async def test_the_listening_line_names_the_auth_mode_and_keeps_its_start(
    flags: list[str], mode: str, public_key_file: str
) -> None:
    flags = [public_key_file if flag == "PUBLIC" else flag for flag in flags]
    with trio.fail_after(TIMEOUT):
        async with run_cli("serve", "--port", "0", *flags) as serve:
            line = await serve.readline()
    url = line.split()[2]  # how tests, benchmarks and scripts read it
    port = int(url.rsplit(":", 1)[1])
    assert url == f"ws://127.0.0.1:{port}"
    assert line == (
        f"Listening on ws://127.0.0.1:{port} (chat page: http://127.0.0.1:{port}/), auth: {mode}"
    )


async def _startup_log(*flags: str) -> tuple[str, list[str]]:
    """The Listening line and the log lines of a server started with *flags*."""
    async with run_cli("serve", "--port", "0", *flags) as serve:
        line = await serve.readline()
        serve.interrupt()  # the warning is logged before the signal is handled
        assert await serve.process.wait() == 0
        log = (await serve.stderr()).splitlines()
    return line, log


WARNING = "anyone who can reach it can connect and publish"


async def test_an_open_server_beyond_loopback_warns_once_and_says_how_to_close_it() -> None:
    with trio.fail_after(3 * TIMEOUT):
        line, log = await _startup_log("--host", "0.0.0.0")
        warned = [entry for entry in log if WARNING in entry]
        assert len(warned) == 1, log
        assert " WARNING " in warned[0]
        assert "listening on 0.0.0.0" in warned[0]
        assert "--token" in warned[0] and "--jwt-key" in warned[0]
        assert line.endswith("auth: open")

        # The same warning as JSON, for log collectors.
        async with run_cli("serve", "--port", "0", "--host", "", "--log-format", "json") as serve:
            await serve.readline()
            serve.interrupt()
            assert await serve.process.wait() == 0
            records = [json.loads(entry) for entry in (await serve.stderr()).splitlines()]
        assert [r["event"] for r in records if r["level"] == "warning"] == ["open_to_network"]

        # Loopback, or a credential: nothing to say.
        for flags in (["--host", "127.0.0.1"], ["--host", "localhost"]):
            _, log = await _startup_log(*flags)
            assert not [entry for entry in log if WARNING in entry], (flags, log)
        _, log = await _startup_log("--host", "0.0.0.0", "--token", "s3cret")
        assert not [entry for entry in log if WARNING in entry], log


# -- R15: both keys, each family with its own ---------------------------------------------


async def test_with_both_keys_hs256_and_rs256_tokens_each_verify_with_their_own_key(
    start_server: StartServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    public = _public_pem(rsa_key)
    server = await start_server(
        ServerOptions(access=AccessPolicy(jwt_secret=KEY, jwt_public_key=public))
    )
    other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    # Algorithm confusion: an "HS256" token whose HMAC key is the public key (PEM).
    header = jwt.utils.base64url_encode(b'{"alg":"HS256","typ":"JWT"}')
    body = jwt.utils.base64url_encode(
        json.dumps({"exp": int(time.time()) + 60, "rooms": {"**": "rw"}}).encode()
    )
    mac = hmac.new(public, header + b"." + body, hashlib.sha256).digest()
    confused = b".".join([header, body, jwt.utils.base64url_encode(mac)]).decode()
    cases = {
        "HS256 with the secret": (signed(KEY, "HS256"), 101),
        "RS256 with the private half": (signed(rsa_key, "RS256"), 101),
        "HS256 with another secret": (signed("x" * 32, "HS256"), 401),
        "RS256 with another key": (signed(other_rsa, "RS256"), 401),
        "ES256 with an unrelated key": (signed(ec_key, "ES256"), 401),
        "HS512 with the secret": (signed(KEY, "HS512"), 401),
        "HS256 keyed with the public key": (confused, 401),
    }
    with trio.fail_after(TIMEOUT):
        for name, (credential, expected) in cases.items():
            assert await status_of(url_of(server, f"/lobby?token={credential}")) == expected, name


async def test_the_command_line_with_both_keys_lets_both_kinds_of_token_in(
    public_key_file: str, rsa_key: rsa.RSAPrivateKey
) -> None:
    with trio.fail_after(TIMEOUT):
        async with run_cli(
            "serve", "--port", "0", "--jwt-key", KEY, "--jwt-public-key", public_key_file
        ) as serve:
            base = (await serve.readline()).split()[2]
            for credential in (signed(KEY, "HS256"), signed(rsa_key, "RS256")):
                async with run_cli("echo", "--token", credential, f"{base}/r", "hi") as echo:
                    assert await echo.process.wait() == 0
            assert await status_of(f"{base}/r") == 401


# -- R17: accept() errors that Linux says to retry ----------------------------------------

RETRIED = [
    name
    for name in (
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
    )
    if hasattr(errno, name)
]


class FlakyListener(socket.socket):
    """A real listening socket whose accept() first raises the errors in ``failures``,
    one per call, as Linux does for a new connection with a pending network error."""

    failures: list[int]

    def accept(self) -> tuple[socket.socket, Any]:
        if self.failures:
            code = self.failures.pop(0)
            raise OSError(code, os.strerror(code))
        return super().accept()


@pytest.mark.parametrize(
    "failures", [*([name] for name in RETRIED), RETRIED], ids=[*RETRIED, "all"]
)
async def test_accept_errors_that_linux_says_to_retry_do_not_stop_the_server(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch, failures: Sequence[str]
) -> None:
    flaky: list[FlakyListener] = []
    open_listeners = trio_ws_demo.server.lifecycle.open_listeners

    async def open_flaky(*args: Any, **kwargs: Any) -> list[socket.socket]:
        listeners = await open_listeners(*args, **kwargs)
        for listener in listeners:
            wrapped = FlakyListener(
                listener.family, listener.type, listener.proto, fileno=listener.detach()
            )
            wrapped.failures = [getattr(errno, name) for name in failures]
            flaky.append(wrapped)
        return list(flaky)

    monkeypatch.setattr(trio_ws_demo.server.lifecycle, "open_listeners", open_flaky)
    server = await start_server()
    with trio.fail_after(TIMEOUT):
        # The first connection meets every error in turn, then is accepted.
        async with connect(url_of(server, "/r"), proxy=None) as first:
            assert [listener.failures for listener in flaky] == [[]]  # all raised
            async with connect(url_of(server, "/r"), proxy=None) as second:
                await first.send("still serving")
                assert await second.recv() == "still serving"
    assert server.statistics().connections_total == 2
