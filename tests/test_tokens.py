"""Signed tokens (JWT): who may read and write which room, minted with PyJWT,
checked by a real server at the handshake and on the live connection."""

from __future__ import annotations

import time

import jwt
import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.trio.client import connect

from trio_ws_demo import AccessPolicy, ServerOptions
from trio_ws_demo.tokens import matches

from .conftest import StartServer, url_of
from .processes import run_cli

KEY = "k" * 32
TIMEOUT = 10
V1 = ["trio-ws-demo.v1"]


def token(rooms: dict[str, str], *, key: object = KEY, algorithm: str = "HS256",
          ttl: float = 60, **claims: object) -> str:  # fmt: skip
    payload: dict[str, object] = {"exp": int(time.time() + ttl), "rooms": rooms, **claims}
    return jwt.encode(payload, key, algorithm=algorithm)  # type: ignore[arg-type]


def with_jwt(**more: object) -> ServerOptions:
    return ServerOptions(access=AccessPolicy(jwt_secret=KEY, **more))  # type: ignore[arg-type]


async def status_of(url: str) -> int:
    try:
        async with connect(url, proxy=None):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


# -- patterns ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "room", "covered"),
    [
        ("ops", "ops", True),
        ("ops", "ops/x", False),
        ("ops", "opsx", False),
        ("ops/*", "ops/x", True),
        ("ops/*", "ops", False),
        ("ops/*", "opsx", False),
        ("ops/*", "ops/x/y", False),
        ("ops/**", "ops/x", True),
        ("ops/**", "ops/x/y", True),
        ("ops/**", "ops", False),
        ("*", "lobby", True),
        ("*", "", False),
        ("**", "", True),
        ("**", "a/b/c", True),
        ("*/alerts", "ops/alerts", True),
        ("*/alerts", "ops/alerts/x", False),
    ],
)
def test_a_pattern_covers_exactly_what_the_readme_says(
    pattern: str, room: str, covered: bool
) -> None:
    assert matches(pattern, room) is covered


# -- at the handshake --------------------------------------------------------------


async def test_bad_tokens_are_401_and_a_room_without_read_right_is_403(
    start_server: StartServer,
) -> None:
    server = await start_server(with_jwt())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    unsigned = {"exp": int(time.time()) + 60, "rooms": {"**": "rw"}}
    cases = {
        "no token": ("", 401),
        "expired": (token({"**": "rw"}, ttl=-5), 401),
        "wrong key": (token({"**": "rw"}, key="x" * 32), 401),
        "alg none": (jwt.encode(unsigned, None, algorithm="none"), 401),
        "wrong algorithm": (token({"**": "rw"}, key=rsa_key, algorithm="RS256"), 401),
        "no exp": (jwt.encode({"rooms": {"**": "rw"}}, KEY, algorithm="HS256"), 401),
        "other room": (token({"ops/*": "rw"}), 403),
        "write only": (token({"lobby": "w"}), 403),
        "read": (token({"lobby": "r"}), 101),
        "pattern": (token({"*": "r"}), 101),
    }
    with trio.fail_after(TIMEOUT):
        for name, (credential, expected) in cases.items():
            query = f"?token={credential}" if credential else ""
            assert await status_of(url_of(server, f"/lobby{query}")) == expected, name
    reasons = server.statistics().rejections
    assert reasons["token expired"] == 1 and reasons["not allowed to read this room"] == 2


async def test_the_shared_token_keeps_every_right_beside_signed_tokens(
    start_server: StartServer,
) -> None:
    server = await start_server(with_jwt(token="shared-secret"))
    with trio.fail_after(TIMEOUT):
        assert await status_of(url_of(server, "/any/room?token=shared-secret")) == 101
        assert await status_of(url_of(server, f"/lobby?token={token({'lobby': 'r'})}")) == 101
        assert await status_of(url_of(server, "/lobby?token=guess")) == 401


@pytest.mark.parametrize("kind", ["RS256", "ES256"])
async def test_a_public_key_accepts_tokens_signed_with_its_private_half(
    start_server: StartServer, kind: str
) -> None:
    private = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "RS256"
        else ec.generate_private_key(ec.SECP256R1())
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    server = await start_server(ServerOptions(access=AccessPolicy(jwt_public_key=public)))
    good = token({"lobby": "rw"}, key=private, algorithm=kind)
    with trio.fail_after(TIMEOUT):
        assert await status_of(url_of(server, f"/lobby?token={good}")) == 101
        assert await status_of(url_of(server, f"/lobby?token={token({'lobby': 'rw'})}")) == 401


# -- on the live connection ---------------------------------------------------------


async def test_a_message_without_the_write_right_reaches_nobody_and_closes_1008(
    start_server: StartServer,
) -> None:
    server = await start_server(with_jwt())
    reader = token({"lobby": "r"}, sub="viewer")
    writer = token({"lobby": "rw"}, sub="alice")
    with trio.fail_after(TIMEOUT):
        async with (
            connect(url_of(server, f"/lobby?token={writer}"), proxy=None) as alice,
            connect(url_of(server, f"/lobby?token={reader}"), proxy=None) as viewer,
        ):
            await viewer.send("not mine to say")
            with pytest.raises(ConnectionClosed) as closed:
                await viewer.recv()
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
                1008, "not allowed to publish",
            )  # fmt: skip
            await alice.send("mine")
            assert await alice.recv() == "mine"  # the first thing alice got


async def test_a_token_that_expires_closes_the_connection_at_exp(
    start_server: StartServer,
) -> None:
    server = await start_server(with_jwt())
    expires = time.time() + 1.5
    short = jwt.encode({"exp": expires, "rooms": {"lobby": "rw"}}, KEY, algorithm="HS256")
    with trio.fail_after(TIMEOUT):
        async with connect(url_of(server, f"/lobby?token={short}"), proxy=None) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            ended = time.time()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "token expired")
    assert expires <= ended < expires + 1  # at exp, not later


async def test_the_token_command_mints_what_serve_accepts_and_echo_sends() -> None:
    with trio.fail_after(20):
        async with run_cli("token", "--sub", "alice", "--room", "chat/*=rw", "--ttl", "1h",
                           env={"TRIO_WS_DEMO_JWT_KEY": KEY}) as minted:  # fmt: skip
            signed = (await minted.readline()).strip()
            assert await minted.process.wait() == 0
        claims = jwt.decode(signed, KEY, algorithms=["HS256"])
        assert claims["sub"] == "alice" and claims["rooms"] == {"chat/*": "rw"}
        assert 3590 < claims["exp"] - time.time() <= 3600
        async with run_cli("serve", "--port", "0", "--jwt-key", KEY) as serve:
            base = (await serve.readline()).split()[2]
            async with run_cli("echo", "--token", signed, f"{base}/chat/lobby", "hi") as echo:
                assert await echo.process.wait() == 0
            async with run_cli("echo", "--token", signed, f"{base}/ops", "hi",
                               merged=True) as refused:  # fmt: skip
                assert await refused.process.wait() == 1
                out = "\n".join(await refused.rest())
    assert "403" in out


async def test_token_without_a_key_is_a_usage_error() -> None:
    with trio.fail_after(10):
        async with run_cli("token", "--room", "x=r", env={"TRIO_WS_DEMO_JWT_KEY": ""}) as cli:
            assert await cli.process.wait() == 2
            err = await cli.stderr()
    assert err.strip().splitlines() == [
        "error: pass one of --jwt-key SECRET (or $TRIO_WS_DEMO_JWT_KEY) or --jwt-private-key FILE"
    ]


async def test_a_token_without_a_room_is_refused_it_could_do_nothing() -> None:
    with trio.fail_after(10):
        async with run_cli("token", "--sub", "bob", env={"TRIO_WS_DEMO_JWT_KEY": KEY}) as cli:
            assert await cli.process.wait() == 2
            err = await cli.stderr()
            assert await cli.rest() == []  # no token printed
    assert err == (
        "error: a token without --room can read and write nothing; add one, "
        "e.g. --room 'chat/*=rw' (or --room '**=r' for every room)\n"
    )


async def test_room_patterns_are_read_as_the_server_reads_room_names() -> None:
    with trio.fail_after(10):
        async with run_cli("token", "--room", "/ops/=rw", "--room", "cafe\u0301=r",
                           env={"TRIO_WS_DEMO_JWT_KEY": KEY}) as minted:  # fmt: skip
            signed = (await minted.readline()).strip()
    assert jwt.decode(signed, KEY, algorithms=["HS256"])["rooms"] == {"ops": "rw", "café": "r"}


@pytest.mark.parametrize("malformed", ["x.\xb7y.z", "not-a-token", "a.b", "e30.!!.e30"])
async def test_a_malformed_token_is_not_a_signed_token_without_the_librarys_words(
    start_server: StartServer, malformed: str
) -> None:
    server = await start_server(with_jwt())
    with trio.fail_after(TIMEOUT):
        async with run_cli("echo", "--token", malformed, url_of(server, "/lobby"), "hi") as echo:
            assert await echo.process.wait() == 1
            err = await echo.stderr()
    assert (
        err
        == f"Connection error: refused: HTTP 401 not a signed token ({url_of(server, '/lobby')})\n"
    )


async def test_a_rate_over_max_message_rate_closes_1008_and_is_not_delivered(
    start_server: StartServer,
) -> None:
    server = await start_server(
        ServerOptions(max_message_rate=1, message_burst=5, rate_limit_action="close")
    )
    with trio.fail_after(TIMEOUT):
        async with (
            connect(url_of(server, "/r"), proxy=None) as listener,
            connect(url_of(server, "/r"), proxy=None) as flooder,
        ):
            for i in range(6):
                await flooder.send(f"m{i}")
            got = [await listener.recv() for _ in range(5)]
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await flooder.recv()
            assert got == [f"m{i}" for i in range(5)]
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "rate limit")
            await listener.send("after")
            assert await listener.recv() == "after"  # m5 never came
