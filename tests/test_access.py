"""access.py: one admission for the front door, the publish API and the web routes.

The order is one: the origin (403), the credential (401), the right (403). A web
read without an ``Origin`` passes the origin rule (scrapers send none); one with
a foreign ``Origin`` does not.
"""

from __future__ import annotations

import time

import pytest

from trio_ws_demo import AccessPolicy
from trio_ws_demo.access import Use
from trio_ws_demo.http import HttpRefusal, RequestHead, parse_request_head
from trio_ws_demo.tokens import Grant, mint

STRICT = AccessPolicy(allow_origins=frozenset({"https://good.example"}), token="s3cret")


def head(target: str = "/lobby", *headers: str) -> RequestHead:
    lines = [f"GET {target} HTTP/1.1", "Host: chat.example", *headers]
    parsed = parse_request_head("\r\n".join(lines).encode())
    assert isinstance(parsed, RequestHead)
    return parsed


def refusal(result: Grant | HttpRefusal) -> tuple[int, str]:
    assert isinstance(result, HttpRefusal), result
    return result.status, result.reason


@pytest.mark.parametrize("use", list(Use))
def test_the_origin_comes_before_the_credential_for_every_use(use: Use) -> None:
    bad = head("/lobby", "Origin: https://evil.example")
    assert refusal(STRICT.admit(bad, "lobby", 0.0, use)) == (403, "origin not allowed")


@pytest.mark.parametrize("use", list(Use))
def test_the_credential_comes_before_the_right(use: Use) -> None:
    good = head("/lobby", "Origin: https://good.example", "Authorization: Bearer wrong")
    assert refusal(STRICT.admit(good, "lobby", 0.0, use))[0] == 401


def test_an_absent_origin_is_refused_for_sockets_and_publishes_but_not_web_reads() -> None:
    bare = head("/lobby?token=s3cret")
    for use in (Use.CONNECT, Use.PUBLISH):
        assert refusal(STRICT.admit(bare, "lobby", 0.0, use)) == (403, "origin not allowed")
    for use in (Use.ROOM, Use.ROOMS, Use.METRICS):
        assert isinstance(STRICT.admit(bare, "lobby", 0.0, use), Grant)


def test_each_use_checks_its_own_right() -> None:
    policy = AccessPolicy(jwt_secret="k" * 32)
    now = time.time()
    reader = mint(
        secret="k" * 32,
        private_key=None,
        sub="ann",
        rooms={"lobby": "r"},
        publish=False,
        expires=now + 60,
    )
    bearer = head("/lobby", f"Authorization: Bearer {reader}")
    assert isinstance(policy.admit(bearer, "lobby", now, Use.CONNECT), Grant)
    assert isinstance(policy.admit(bearer, "lobby", now, Use.ROOM), Grant)
    assert isinstance(policy.admit(bearer, None, now, Use.ROOMS), Grant)
    assert refusal(policy.admit(bearer, "other", now, Use.CONNECT)) == (
        403,
        "not allowed to read this room",
    )
    assert refusal(policy.admit(bearer, "lobby", now, Use.PUBLISH)) == (
        403,
        "not allowed to publish in this room",
    )
    assert refusal(policy.admit(bearer, None, now, Use.METRICS)) == (
        403,
        "not allowed to read every room",
    )


def test_an_open_server_admits_everyone_everywhere() -> None:
    for use in Use:
        assert isinstance(AccessPolicy().admit(head(), "lobby", 0.0, use), Grant)
