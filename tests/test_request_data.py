"""Request data is bounded and escaped, in one place each (issue 25, section 5).

Over real sockets against a real server: what a client sends never becomes a
metric label or a counter key (R5, T1), never reaches a log line unredacted,
never makes the front door raise (R11), and a name that could drive a
terminal or disguise itself is refused (T16). ``/rooms/<room>`` is paged
(T17); odd ``exp`` values are a 401 (T18).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import urllib.parse

import pytest
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, Request

from trio_ws_demo import AccessPolicy, BroadcastServer, ServerOptions

from .conftest import StartServer
from .wsraw import http_exchange

KEY = "k" * 32
SHARED = "shared-secret-for-metrics"
TIMEOUT = 30


def upgrade(target: str | bytes, *extra: str) -> bytes:
    """A valid upgrade request for *target* (bytes: sent as they are)."""
    raw = target if isinstance(target, bytes) else target.encode()
    lines = [
        b"GET " + raw + b" HTTP/1.1",
        b"Host: 127.0.0.1",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Version: 13",
        b"Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==",
        *(line.encode() for line in extra),
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def get(target: str, *extra: str) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:100]
    return int(answer.split(b" ", 2)[1])


def body_of(answer: bytes) -> bytes:
    return answer.partition(b"\r\n\r\n")[2]


def signed(payload: bytes, header: bytes = b'{"alg":"HS256","typ":"JWT"}') -> str:
    """An HS256 token over raw JSON bytes: PyJWT's encoder would refuse NaN and friends."""

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = b64(header) + b"." + b64(payload)
    signature = hmac.new(KEY.encode(), signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + b64(signature)).decode()


def jwt_options(**more: object) -> ServerOptions:
    access = AccessPolicy(token=SHARED, jwt_secret=KEY, **more)  # type: ignore[arg-type]
    return ServerOptions(access=access)


async def metrics_size(port: int) -> int:
    answer = await http_exchange(port, get("/metrics", f"Authorization: Bearer {SHARED}"))
    assert status_of(answer) == 200
    return len(body_of(answer))


async def exchange_all(port: int, requests: list[bytes], width: int = 50) -> list[bytes]:
    """Every request on its own connection, *width* at a time; the answers in order."""
    answers: list[bytes] = [b""] * len(requests)
    limit = trio.Semaphore(width)

    async def one(i: int) -> None:
        async with limit:
            answers[i] = await http_exchange(port, requests[i])

    async with trio.open_nursery() as nursery:
        for i in range(len(requests)):
            nursery.start_soon(one, i)
    return answers


def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- R5, T1: counters and labels -----------------------------------------------------


async def test_refusals_with_request_data_do_not_grow_metrics(start_server: StartServer) -> None:
    """2,000 upgrades to /rooms/<n> and 300 differently broken tokens add two
    labels, not 2,300: on fb55a7f /metrics grew from 3 KB to megabytes."""
    server = await start_server(jwt_options())
    assert server.port is not None
    with trio.fail_after(TIMEOUT):
        before = await metrics_size(server.port)
        reserved = [upgrade(f"/rooms/{n:05d}{'a' * 500}") for n in range(2000)]
        answers = await exchange_all(server.port, reserved)
        assert {status_of(a) for a in answers} == {400}
        assert b"reserved" in body_of(answers[0])  # the detail stays in the body
        # JSON headers broken at 300 different columns (300 different PyJWT messages,
        # which the body no longer repeats: issue 28).
        broken = [
            signed(b'{"exp": 1}', header=b'{"alg":"HS256"' + b" " * n + b'"typ":"JWT"}')
            for n in range(300)
        ]
        answers = await exchange_all(server.port, [upgrade(f"/lobby?token={t}") for t in broken])
        assert {status_of(a) for a in answers} == {401}
        details = {body_of(a) for a in answers}
        assert all(b"not a signed token" in d for d in details), details  # what was wrong
        after = await metrics_size(server.port)
    assert after - before < 1024, (before, after)
    rejections = server.statistics().rejections
    # Two fixed names (trio_ws_demo.reasons.Reason), whatever the paths and tokens were.
    assert rejections == {"reserved path": 2000, "not an acceptable token": 300}


# -- one redaction for every logged target -----------------------------------------------


async def test_a_refused_target_is_logged_redacted(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A token after ``;`` in a reserved path was logged in clear: the path was
    part of the refusal's text, which went to the log line outside redact()."""
    caplog.set_level(logging.DEBUG, logger="trio_ws_demo")
    server = await start_server(jwt_options())
    assert server.port is not None
    with trio.fail_after(TIMEOUT):
        for target in ("/rooms/x;token=SECRET123", "/rooms/x;token=SECRET123?token=SECRET123"):
            assert status_of(await http_exchange(server.port, upgrade(target))) == 400
        answer = await http_exchange(server.port, get("/x;token=SECRET123"))
        assert status_of(answer) == 404
        metrics = await http_exchange(
            server.port, get("/metrics", f"Authorization: Bearer {SHARED}")
        )
    lines = [r.getMessage() for r in caplog.records]
    assert any("refused" in line and "token=***" in line for line in lines), lines
    assert not [line for line in lines if "SECRET123" in line]
    assert b"SECRET123" not in metrics
    for record in caplog.records:
        assert "SECRET123" not in json.dumps(
            {k: str(v) for k, v in vars(record).items() if k in ("path", "reason")}
        )


# -- R11: targets and origins that made urlsplit raise -------------------------------------


async def test_bad_targets_and_origins_get_an_answer_and_no_traceback(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_ws_demo")
    options = ServerOptions(access=AccessPolicy(allow_origins=frozenset({"http://ok.example"})))
    server = await start_server(options)
    assert server.port is not None
    cases = {
        "GET //[x": (get("//[x"), 400),
        "upgrade //[x": (upgrade("//[x"), 400),
        "POST //[x": (b"POST //[x HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx", 400),
        "Origin http://[x": (upgrade("/lobby", "Origin: http://[x"), 403),
        # urlsplit read //x/y as host x, path /y: the upgrade joined room y (T15).
        "upgrade //x/y": (upgrade("//x/y"), 400),
        # A raw byte past 0x7e is no URL character (and 0x80-0x9f are C1 controls).
        "raw byte in the query": (upgrade(b"/lobby?x=\xff"), 400),
        "raw C1 byte in the query": (upgrade(b"/lobby?x=\x9b2J"), 400),
    }
    with trio.fail_after(TIMEOUT):
        for name, (request, expected) in cases.items():
            answer = await http_exchange(server.port, request)
            assert answer, name  # an answer, not a dropped connection
            assert status_of(answer) == expected, (name, answer)
    assert not errors(caplog), [r.getMessage() for r in errors(caplog)]
    assert server.statistics().connection_errors == 0
    assert server.statistics().rejections["bad request target"] == 6


# -- T16: names that could drive a terminal or disguise themselves ---------------------------


BAD_NAMES = [
    "\x1b]0;pwned\x07\x1b[2J\x1b[31mEVIL",
    "a\x1b[31mred\x07\x00b",
    "line1\nline2",
    "alice\u202egnp.exe",  # bidi override: shows as "alicexe.png"
    "x\u2066y\u2069",  # bidi isolate
    "x\u0085y",  # NEL (C1)
    "x\u2028z",  # line separator
    "x\u2029z",  # paragraph separator
    "x\U000e0041y",  # an invisible tag character (Cf)
]
#: Letters of any script, emoji and emoji sequences (ZWJ is Cf, but allowed).
GOOD_NAMES = ["Zoë", "Ελένη", "山田", "🙂", "👨\u200d👩\u200d👧", "a b"]


async def test_names_with_control_or_bidi_characters_are_refused_others_kept(
    server: BroadcastServer,
) -> None:
    """Refused with a 400 that says which character, not cleaned (see
    handshake.name_refusal); ordinary names of every script are kept as sent."""
    assert server.port is not None
    with trio.fail_after(TIMEOUT):
        for name in BAD_NAMES:
            target = "/names?name=" + urllib.parse.quote(name)
            answer = await http_exchange(server.port, upgrade(target))
            assert status_of(answer) == 400, (name, answer)
            assert b"a name may not contain control" in body_of(answer)
        joined = [
            await open_client(server.port, "/names?name=" + urllib.parse.quote(name))
            for name in GOOD_NAMES
        ]
        answer = await http_exchange(server.port, get("/rooms/names"))
    for stream in joined:
        await stream.aclose()
    members = json.loads(body_of(answer))["members"]
    assert sorted(m["name"] for m in members) == sorted(GOOD_NAMES)
    assert server.statistics().rejections["bad name"] == len(BAD_NAMES)


async def test_a_token_sub_with_control_characters_is_refused(start_server: StartServer) -> None:
    server = await start_server(jwt_options())
    assert server.port is not None
    exp = int(time.time() + 60)
    evil = json.dumps({"exp": exp, "rooms": {"**": "rw"}, "sub": "\x1b]0;pwned\x07"}).encode()
    good = json.dumps({"exp": exp, "rooms": {"**": "rw"}, "sub": "Zoë 🙂"}).encode()
    with trio.fail_after(TIMEOUT):
        answer = await http_exchange(server.port, upgrade(f"/lobby?token={signed(evil)}"))
        assert status_of(answer) == 400, answer
        assert b"the token's sub holds U+001B" in body_of(answer)
        stream = await open_client(server.port, f"/lobby?token={signed(good)}")
        await stream.aclose()


async def open_client(port: int, target: str) -> trio.SocketStream:
    """A WebSocket client joined at *target*, left open (it reads nothing)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    ws = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(ws.send(Request(host="127.0.0.1", target=target)))
    while True:
        ws.receive_data(await stream.receive_some(65536))
        for event in ws.events():
            if isinstance(event, AcceptConnection):
                return stream
            assert not isinstance(event, RejectConnection), (target, event)


# -- T17: /rooms/<room> is paged ----------------------------------------------------------


async def test_the_member_list_is_paged_like_the_room_list(server: BroadcastServer) -> None:
    """1,001 members: the default page holds 1,000; ``next`` leads to the last.
    On fb55a7f every member came back in one answer (2,500: 251 KiB)."""
    assert server.port is not None
    port = server.port
    count = 1001
    streams: list[trio.SocketStream] = []
    with trio.fail_after(TIMEOUT):
        limit = trio.Semaphore(50)

        async def join(i: int) -> None:
            async with limit:
                streams.append(await open_client(port, f"/crowd?name=member{i:04d}"))

        async with trio.open_nursery() as nursery:
            for i in range(count):
                nursery.start_soon(join, i)
        first = json.loads(body_of(await http_exchange(port, get("/rooms/crowd"))))
        assert first["clients"] == count and len(first["members"]) == 1000
        assert first["next"] is not None
        after = urllib.parse.quote(first["next"])
        rest = json.loads(body_of(await http_exchange(port, get(f"/rooms/crowd?after={after}"))))
        assert rest["next"] is None and len(rest["members"]) == 1
        seen = [m["name"] for m in first["members"] + rest["members"]]
        assert sorted(seen) == [f"member{i:04d}" for i in range(count)]
        # Small pages walk the same list, earliest first, with no member twice.
        walked: list[str] = []
        cursor: str | None = None
        while True:
            query = "?limit=300" + (f"&after={urllib.parse.quote(cursor)}" if cursor else "")
            page = json.loads(body_of(await http_exchange(port, get(f"/rooms/crowd{query}"))))
            assert len(page["members"]) <= 300
            walked += [m["name"] for m in page["members"]]
            cursor = page["next"]
            if cursor is None:
                break
        assert walked == seen
        for bad in ("0", "1001", "x"):
            answer = await http_exchange(port, get(f"/rooms/crowd?limit={bad}"))
            assert status_of(answer) == 400, bad
    for stream in streams:
        await stream.aclose()


# -- T18: odd exp values ------------------------------------------------------------------


@pytest.mark.parametrize("exp", [b"NaN", b"Infinity", b"1" + b"0" * 400, b"1e400", b"253402300800"])
async def test_an_odd_exp_is_a_401_without_a_traceback(
    start_server: StartServer, caplog: pytest.LogCaptureFixture, exp: bytes
) -> None:
    caplog.set_level(logging.INFO, logger="trio_ws_demo")
    server = await start_server(jwt_options())
    assert server.port is not None
    token = signed(b'{"exp": ' + exp + b', "rooms": {"**": "rw"}}')
    with trio.fail_after(TIMEOUT):
        answer = await http_exchange(server.port, upgrade(f"/lobby?token={token}"))
    assert answer, "no answer"
    assert status_of(answer) == 401, answer
    assert not errors(caplog)
    assert server.statistics().connection_errors == 0
