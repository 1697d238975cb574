"""``redis+sentinel://`` URLs: what a good one says, and one clear line for a bad one."""

from __future__ import annotations

import pytest
import trio

from trio_ws_demo.backplane.sentinel_url import SentinelURL, parse_sentinel_url
from trio_ws_demo.errors import BackplaneUnavailable
from trio_ws_demo.redact import redact_url

from .processes import run_cli


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        (
            "redis+sentinel://:s3cret@127.0.0.1:26379,127.0.0.1:26380/mymaster/2",
            SentinelURL(
                (("127.0.0.1", 26379), ("127.0.0.1", 26380)), "mymaster", 2, None, "s3cret"
            ),
        ),
        ("redis+sentinel://h/svc", SentinelURL((("h", 26379),), "svc")),
        ("REDIS+SENTINEL://h:1/svc/", SentinelURL((("h", 1),), "svc")),
        (
            "redis+sentinel://[::1]:5000,[::1]/a.b-c_d",
            SentinelURL((("::1", 5000), ("::1", 26379)), "a.b-c_d"),
        ),
        (
            "redis+sentinel://alice:p%40ss@h:1/svc/0",
            SentinelURL((("h", 1),), "svc", 0, "alice", "p@ss"),
        ),
    ],
)
def test_a_good_url_names_the_sentinels_the_service_and_the_db(
    url: str, parsed: SentinelURL
) -> None:
    assert parse_sentinel_url(url) == parsed


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis://h:1/0", "not a redis+sentinel:// URL"),
        ("redis+sentinel://:pw@/svc", "no sentinel"),
        ("redis+sentinel://h:1", "no service name"),
        ("redis+sentinel://h:1/", "no service name"),
        ("redis+sentinel://h:x/svc", "the sentinel 'h:x' has no port from 1 to 65535"),
        ("redis+sentinel://h:0/svc", "has no port"),
        ("redis+sentinel://h:70000/svc", "has no port"),
        ("redis+sentinel://h:/svc", "has no port"),
        ("redis+sentinel://::1:5/svc", "the sentinel '::1:5' is not HOST:PORT"),
        ("redis+sentinel://[::1/svc", "is not [IPv6]:PORT"),
        ("redis+sentinel://h:1,,h:2/svc", "is not HOST:PORT"),
        ("redis+sentinel://h:1,h:1/svc", "a sentinel is named twice"),
        ("redis+sentinel://h:1/svc/a", "the database 'a' is not a number"),
        ("redis+sentinel://h:1/svc/1/2", "the path is /SERVICE or /SERVICE/DB"),
        ("redis+sentinel://h:1/s%20v", "is not letters, digits"),
        ("redis+sentinel://h:1/svc?db=1", "no query, fragment"),
        ("redis+sentinel://h:1/svc\nINFO", "no query, fragment, spaces or control"),
    ],
)
def test_a_bad_url_is_one_line_saying_what_is_wrong_and_no_password(url: str, why: str) -> None:
    with pytest.raises(BackplaneUnavailable) as caught:
        parse_sentinel_url(url.replace("//", "//:hunter2@", 1) if "@" not in url else url)
    message = str(caught.value)
    assert message.startswith("invalid --redis URL 'redis+sentinel://") or why.startswith("not a")
    assert why in message
    assert "\n" not in message
    assert "hunter2" not in message and "pw@" not in message


def test_redact_url_hides_the_password_of_a_sentinel_url() -> None:
    assert (
        redact_url("redis+sentinel://:s3cret@h1:1,h2:2/svc/1")
        == "redis+sentinel://:***@h1:1,h2:2/svc/1"
    )
    assert (
        redact_url("redis+sentinel://u:s3cret@[::1]:1/svc") == "redis+sentinel://u:***@[::1]:1/svc"
    )
    assert redact_url("redis+sentinel://h1:1,h2:2/svc") == "redis+sentinel://h1:1,h2:2/svc"
    # a password with an unescaped "/" or "@" is hidden whole
    assert redact_url("redis://:pa/ss@h:1/0") == "redis://:***@h:1/0"
    assert redact_url("redis://:p@ss@h:1/0") == "redis://:***@h:1/0"


async def test_the_cli_refuses_a_bad_sentinel_url_with_exit_2_and_one_line() -> None:
    with trio.fail_after(15):
        async with run_cli("serve", "--redis", "redis+sentinel://:s3cret@127.0.0.1:1") as cli:
            assert await cli.process.wait() == 2
            err = await cli.stderr()
    assert err == (
        "error: invalid --redis URL 'redis+sentinel://:***@127.0.0.1:1': no service name: "
        "end the URL with /SERVICE (the sentinels' master name)\n"
    )
