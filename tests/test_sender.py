"""Who said what (issue 28, item 1): the server stamps every v1 message with ``from``.

The name is the server's word, never the client's: a signed token's ``sub``,
else the ``?name=`` given at the handshake, else an id of the connection; an
HTTP publish is from the token's ``sub``, or ``"api"``. Through Redis, every
process stamps the same name. Plain clients get the bare text, as before.
"""

from __future__ import annotations

import json
import time

import jwt
import trio
from websockets.trio.client import connect

from trio_ws_demo import AccessPolicy, ServerOptions

from .backplane_rigs import V1, frames, until_frame
from .conftest import StartServer, url_of
from .redis_server import RedisServer, require_redis
from .wsraw import http_exchange

TIMEOUT = 10
KEY = "s" * 32


async def test_every_v1_message_says_who_sent_it(start_server: StartServer) -> None:
    server = await start_server(ServerOptions())
    with trio.fail_after(TIMEOUT):
        async with (
            connect(url_of(server, "/r?name=alice"), subprotocols=V1, proxy=None) as alice,  # type: ignore[list-item]
            connect(url_of(server, "/r"), subprotocols=V1, proxy=None) as anonymous,  # type: ignore[list-item]
            connect(url_of(server, "/r"), proxy=None) as plain,
        ):
            await until_frame(alice, "joined")
            await until_frame(anonymous, "joined")
            await alice.send("hi from alice")
            # Text that looks like an envelope is only text: it cannot set "from".
            forged = json.dumps({"type": "message", "from": "bob", "text": "I am bob"})
            await anonymous.send(forged)
            await anonymous.send("again")
            got = await frames(alice, 3)
            bare = [await plain.recv() for _ in range(3)]
    assert (got[0]["from"], got[0]["text"]) == ("alice", "hi from alice")
    guest = got[1]["from"]
    assert got[1]["text"] == forged
    assert isinstance(guest, str) and guest.startswith("guest-") and guest != "bob"
    assert got[2]["from"] == guest  # one id per connection
    assert bare == ["hi from alice", forged, "again"]  # plain clients: the bare text


async def test_a_token_names_its_sender_and_a_post_is_from_its_sub_or_api(
    start_server: StartServer,
) -> None:
    server = await start_server(ServerOptions(access=AccessPolicy(jwt_secret=KEY)))
    claims = {"exp": int(time.time() + 60), "rooms": {"r": "rw"}}
    carol = jwt.encode({**claims, "sub": "carol"}, KEY, algorithm="HS256")
    backend = jwt.encode({**claims, "sub": "billing", "publish": True}, KEY, algorithm="HS256")
    with trio.fail_after(TIMEOUT):
        async with connect(
            url_of(server, f"/r?token={carol}&name=mallory"),
            subprotocols=V1,
            proxy=None,  # type: ignore[list-item]
        ) as ws:
            await until_frame(ws, "joined")
            await ws.send("signed")
            body = b"posted"
            request = (
                f"POST /r HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {backend}\r\n"
                f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode() + body
            answer = await http_exchange(server.port or 0, request)
            got = await frames(ws, 2)
    assert b" 200 " in answer.split(b"\r\n", 1)[0] + b" "
    assert [(f["from"], f["text"]) for f in got] == [("carol", "signed"), ("billing", "posted")]


async def test_an_open_servers_post_is_from_api(start_server: StartServer) -> None:
    server = await start_server(ServerOptions(history=5))
    body = b"from a backend"
    request = (
        f"POST /r HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    with trio.fail_after(TIMEOUT):
        await http_exchange(server.port or 0, request)
        async with connect(url_of(server, "/r"), subprotocols=V1, proxy=None) as ws:  # type: ignore[list-item]
            joined = json.loads(await ws.recv())
            (kept,) = await frames(ws, 1)  # from the history: it kept its sender
    assert joined["history"] == 1 and (kept["from"], kept["text"]) == ("api", "from a backend")


async def test_every_process_stamps_the_same_name(
    redis: RedisServer, start_server: StartServer
) -> None:
    require_redis()
    a = await start_server(ServerOptions(redis=redis.url, history=5))
    b = await start_server(ServerOptions(redis=redis.url, history=5))
    with trio.fail_after(TIMEOUT):
        async with (
            connect(url_of(a, "/x?name=dana"), subprotocols=V1, proxy=None) as dana,  # type: ignore[list-item]
            connect(url_of(b, "/x"), subprotocols=V1, proxy=None) as far,  # type: ignore[list-item]
        ):
            await until_frame(dana, "joined")
            await until_frame(far, "joined")
            await dana.send("across")
            (there,) = await frames(far, 1)
        # A process that loads the room from Redis later keeps the name too.
        c = await start_server(ServerOptions(redis=redis.url, history=5))
        async with connect(url_of(c, "/x"), subprotocols=V1, proxy=None) as late:  # type: ignore[list-item]
            await until_frame(late, "joined")
            (loaded,) = await frames(late, 1)
    assert (there["from"], loaded["from"]) == ("dana", "dana")
