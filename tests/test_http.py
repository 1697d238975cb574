"""The request head reader on its own: fed bytes, no socket (http.py is sans-I/O)."""

from __future__ import annotations

from trio_ws_demo.http import HeadReader, HttpRefusal, RequestHead, response

HEAD = b"GET /room?x=1 HTTP/1.1\r\nHost: example\r\nUpgrade: websocket\r\n\r\n"


def test_a_head_fed_a_byte_at_a_time_is_read_once_whole() -> None:
    reader = HeadReader()
    results = [reader.feed(HEAD[i : i + 1]) for i in range(len(HEAD))]
    assert results[:-1] == [None] * (len(HEAD) - 1)
    head = results[-1]
    assert isinstance(head, RequestHead)
    assert (head.method, head.path, head.query_string) == ("GET", "/room", "x=1")
    assert head.header("upgrade") == "websocket"


def test_what_follows_the_head_is_kept_for_the_connection() -> None:
    head = HeadReader().feed(HEAD + b"\x81\x85early")
    assert isinstance(head, RequestHead) and head.extra == b"\x81\x85early"
    assert head.raw == HEAD  # what the publish API hands h11: the bytes, not a rewrite


def test_an_oversized_head_is_431_and_tls_on_a_plain_port_is_400() -> None:
    too_big = HeadReader(max_size=256).feed(b"GET / HTTP/1.1\r\nX: " + b"a" * 300)
    assert isinstance(too_big, HttpRefusal) and too_big.status == 431
    hello = HeadReader().feed(b"\x16\x03\x01\x02\x00")
    assert isinstance(hello, HttpRefusal) and hello.status == 400


def test_a_response_is_complete_and_closes() -> None:
    answer = response(404, body=b"no such room\n")
    assert answer.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert b"Content-Length: 13\r\n" in answer and b"Connection: close\r\n" in answer
    assert answer.endswith(b"\r\n\r\nno such room\n")
    assert response(200, body=b"x", head_only=True).endswith(b"\r\n\r\n")
