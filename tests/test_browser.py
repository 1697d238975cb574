"""The chat page in a real browser: Playwright driving Debian's Chromium, headless.

Two pages and one ``echo --listen`` client talk through a real server process;
``<script>`` renders as text; a page reconnects after the server restarts on
the same port. CI installs Chromium (``.ci/run``) and sets CI=true, so there a
missing browser is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import jwt
import pytest
from playwright.sync_api import Page, WebSocketRoute, expect, sync_playwright
from websockets.sync.client import connect

from .conftest import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = os.environ.get("TRIO_WS_DEMO_SCREENSHOT")  # set to refresh docs/chat.png

if not Path(CHROMIUM).exists() and not os.environ.get("CI"):
    pytest.skip("needs Debian's chromium (CI installs it)", allow_module_level=True)

# Sync tests: Playwright's API is its own event loop, so these are not trio tests.
pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@contextmanager
def serve_process(port: int, *flags: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "trio_ws_demo", "serve", "--port", str(port), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("Listening on ws://127.0.0.1:")
        yield process
    finally:
        process.terminate()
        process.wait(timeout=20)
        process.stdout.close()  # type: ignore[union-attr]


@pytest.fixture
def browser_pages() -> Iterator[tuple[Page, Page]]:
    assert Path(CHROMIUM).exists(), "CI must install chromium (see .ci/run)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            first = browser.new_page()
            second = browser.new_page()
            first.set_default_timeout(15_000)
            second.set_default_timeout(15_000)
            expect.set_options(timeout=15_000)
            yield first, second
        finally:
            browser.close()


JWT_KEY = "k" * 32


def signed_token(sub: str, rooms: dict[str, str], seconds: int = 600) -> str:
    """A token signed with JWT_KEY (``serve --jwt-key``) for *sub*, good for *seconds*."""
    claims = {"exp": int(time.time()) + seconds, "sub": sub, "rooms": rooms}
    return jwt.encode(claims, JWT_KEY, algorithm="HS256")


def send(page: Page, text: str) -> None:
    page.fill("#input", text)
    page.press("#input", "Enter")


def test_two_pages_and_a_terminal_chat(browser_pages: tuple[Page, Page]) -> None:
    first, second = browser_pages
    port = free_port()
    with serve_process(port):
        url = f"http://127.0.0.1:{port}/"
        for page in (first, second):
            page.goto(url)
            expect(page.locator("#status")).to_have_text("connected")
        listener = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "trio_ws_demo",
                "echo",
                f"ws://127.0.0.1:{port}",
                "from the terminal",
                "--listen",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            for page in (first, second):
                expect(page.locator("#messages li", has_text="from the terminal")).to_have_count(1)
            send(first, "hello from page one")
            send(second, "<script>window.pwned = 1</script><b>bold?</b>")
            for page in (first, second):
                expect(page.locator("#messages li", has_text="hello from page one")).to_have_count(
                    1
                )
                script_item = page.locator("#messages li", has_text="<script>")
                expect(script_item).to_have_text("<script>window.pwned = 1</script><b>bold?</b>")
                assert page.evaluate("window.pwned") is None
                assert page.locator("#messages b").count() == 0
            # Own messages are marked as such; others' are not.
            expect(first.locator("#messages li.mine")).to_have_text(["hello from page one"])
            expect(second.locator("#messages li.mine")).to_have_count(1)
        finally:
            listener.send_signal(signal.SIGINT)  # a clean close
            out, _ = listener.communicate(timeout=20)
        assert "Server sent:  hello from page one" in out
        assert "Server sent:  <script>window.pwned = 1</script><b>bold?</b>" in out


def test_a_page_reconnects_after_the_server_restarts(browser_pages: tuple[Page, Page]) -> None:
    page, _ = browser_pages
    port = free_port()
    with serve_process(port):
        page.goto(f"http://127.0.0.1:{port}/")
        expect(page.locator("#status")).to_have_text("connected")
    expect(page.locator("#status")).to_have_attribute("data-state", "closed")
    # A second failed attempt while the server is down: the page keeps trying.
    expect(page.locator("#status")).to_contain_text("retrying in 1.0 s")
    with serve_process(port):
        expect(page.locator("#status")).to_have_text("connected")
        send(page, "after the restart")
        expect(page.locator("#messages li.mine")).to_have_text(["after the restart"])


@contextmanager
def relay_process(target: int) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """tests/relay.py: a TCP relay that SIGUSR1 cuts (and holds) and SIGUSR2 restores."""
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "relay.py"), str(target)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("relay on "), line
        yield process, int(line.split()[-1])
    finally:
        process.terminate()
        process.wait(timeout=20)
        process.stdout.close()  # type: ignore[union-attr]


def test_two_rooms_stay_apart_and_the_title_names_the_room(
    browser_pages: tuple[Page, Page],
) -> None:
    red, blue = browser_pages
    port = free_port()
    with serve_process(port):
        red.goto(f"http://127.0.0.1:{port}/red")
        blue.goto(f"http://127.0.0.1:{port}/blue")
        for page in (red, blue):
            expect(page.locator("#status")).to_have_text("connected")
        assert red.title().startswith("#red") and blue.title().startswith("#blue")
        send(red, "only for red")
        expect(red.locator("#messages li.mine")).to_have_text(["only for red"])
        send(blue, "only for blue")
        # Had red's message crossed over, it would be shown before blue's own.
        expect(blue.locator("#messages li")).to_have_text(["only for blue"])
        expect(red.locator("#messages li")).to_have_text(["only for red"])


def test_a_page_that_joins_late_sees_the_history(browser_pages: tuple[Page, Page]) -> None:
    early, late = browser_pages
    port = free_port()
    with serve_process(port, "--history", "10"):
        early.goto(f"http://127.0.0.1:{port}/news")
        expect(early.locator("#status")).to_have_text("connected")
        for text in ("first", "second"):
            send(early, text)
        expect(early.locator("#messages li.mine")).to_have_text(["first", "second"])
        late.goto(f"http://127.0.0.1:{port}/news")
        expect(late.locator("#messages li")).to_have_text(["2 earlier messages", "first", "second"])


def test_a_page_offline_for_a_while_gets_what_it_missed(browser_pages: tuple[Page, Page]) -> None:
    page, _ = browser_pages
    port = free_port()
    with serve_process(port, "--history", "100"), relay_process(port) as (relay, relay_port):
        page.goto(f"http://127.0.0.1:{relay_port}/ops")
        expect(page.locator("#status")).to_have_text("connected")
        send(page, "before the drop")
        expect(page.locator("#messages li.mine")).to_have_text(["before the drop"])
        relay.send_signal(signal.SIGUSR1)  # the page's connection drops
        expect(page.locator("#status")).to_have_attribute("data-state", "closed")
        other = subprocess.run(
            [
                sys.executable,
                "-m",
                "trio_ws_demo",
                "echo",
                f"ws://127.0.0.1:{port}/ops",
                "while you were away",
                "and this too",
            ],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert other.returncode == 0, other.stderr
        # Published while the page is held off: it can get them only from the replay.
        expect(page.locator("#messages li")).to_have_text(["before the drop"])
        relay.send_signal(signal.SIGUSR2)  # the cable is back
        expect(page.locator("#messages li")).to_have_text(
            [
                "before the drop",
                "reconnected, nothing missed",
                "while you were away",
                "and this too",
            ]
        )
        expect(page.locator("#status")).to_have_text("connected")


def test_a_page_without_the_token_says_so_and_stops_retrying(
    browser_pages: tuple[Page, Page],
) -> None:
    page, _ = browser_pages
    port = free_port()
    with serve_process(port, "--token", "s3cret"):
        page.clock.install()  # the page's timers run on a clock the test moves
        page.goto(f"http://127.0.0.1:{port}/ops")
        expect(page.locator("#status")).to_have_attribute("data-state", "unauthorized")
        expect(page.locator("#status")).to_have_text(
            "not authorized (missing or wrong token): enter a token"
        )
        page.clock.run_for(60_000)  # a minute of the page's time: any retry would be due
        expect(page.locator("#status")).to_have_attribute("data-state", "unauthorized")
        assert refusals(port) == 1  # one handshake, never retried
        page.goto(f"http://127.0.0.1:{port}/ops?token=s3cret")
        expect(page.locator("#status")).to_have_text("connected")


def refusals(port: int) -> float:
    """Handshakes the server refused for a missing or wrong token (from /metrics)."""
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Authorization": "Bearer s3cret"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        text = answer.read().decode()
    for line in text.splitlines():
        if line.startswith(
            'trio_ws_demo_handshake_rejections_total{reason="missing or wrong token"}'
        ):
            return float(line.split()[-1])
    return 0.0


@contextmanager
def redis_process(port: int) -> Iterator[subprocess.Popen[str]]:
    from .redis_server import redis_argv

    process = subprocess.Popen(redis_argv(port), stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if "Ready to accept connections" in line:
                break
        process.stdout.close()
        yield process
    finally:
        process.kill()
        process.wait()


def test_pages_on_two_processes_chat_through_redis_and_hear_of_an_outage(
    browser_pages: tuple[Page, Page],
) -> None:
    on_a, on_b = browser_pages
    redis_port = free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    port_a, port_b = free_port(), free_port()
    with (
        redis_process(redis_port) as redis,
        serve_process(port_a, "--redis", redis_url),
        serve_process(port_b, "--redis", redis_url),
    ):
        on_a.goto(f"http://127.0.0.1:{port_a}/team")
        on_b.goto(f"http://127.0.0.1:{port_b}/team")
        for page in (on_a, on_b):
            expect(page.locator("#status")).to_have_text("connected")
        send(on_a, "hello from process A")
        expect(on_b.locator("#messages li")).to_have_text(["hello from process A"])
        redis.kill()
        redis.wait()
        expect(on_b.locator("#messages li.note")).to_have_text(
            ["the server lost its link to the others: you see only this server's clients"]
        )
        with redis_process(redis_port):
            expect(on_b.locator("#messages li.note").last).to_have_text(
                "the server is connected to the others again"
            )
            expect(on_a.locator("#messages li.note").last).to_have_text(
                "the server is connected to the others again"
            )
            send(on_b, "and back")
            expect(on_a.locator("#messages li").last).to_have_text("and back")


# -- names, presence, rights (issue 19) ----------------------------------------------


def test_two_named_pages_see_each_other_and_messages_carry_times(
    browser_pages: tuple[Page, Page],
) -> None:
    alice, bob = browser_pages
    port = free_port()
    with serve_process(port, "--history", "10"):
        alice.goto(f"http://127.0.0.1:{port}/lobby?name=alice")
        expect(alice.locator("#status")).to_have_text("connected")
        bob.goto(f"http://127.0.0.1:{port}/lobby?name=bob")
        expect(bob.locator("#status")).to_have_text("connected")
        for page in (alice, bob):
            expect(page.locator("#people li")).to_have_text(["alice", "bob"])
            expect(page.locator("#count")).to_have_text("who is here (2)")
        send(alice, "hi bob")
        item = bob.locator("#messages li", has_text="hi bob")
        expect(item).to_have_attribute("data-time", re.compile(r"\d{1,2}:\d{2}"))
        expect(bob.locator("#rooms option")).to_have_text(["#lobby"])
        bob.close()
        expect(alice.locator("#people li")).to_have_text(["alice"])


def test_a_read_only_token_greys_out_the_input_and_names_come_from_the_token(
    browser_pages: tuple[Page, Page],
) -> None:
    reader, writer = browser_pages
    port = free_port()

    def signed(sub: str, rights: str) -> str:
        return signed_token(sub, {"news": rights})

    with serve_process(port, "--jwt-key", JWT_KEY):
        reader.goto(f"http://127.0.0.1:{port}/news?token={signed('viewer', 'r')}")
        writer.goto(f"http://127.0.0.1:{port}/news?token={signed('editor', 'rw')}")
        for page in (reader, writer):
            expect(page.locator("#status")).to_have_text("connected")
        expect(reader.locator("#input")).to_be_disabled()
        expect(reader.locator("#name")).to_have_value("viewer")
        expect(writer.locator("#input")).to_be_enabled()
        expect(writer.locator("#people li")).to_have_text(["viewer", "editor"])
        send(writer, "extra! extra!")
        expect(reader.locator("#messages li")).to_have_text(["extra! extra!"])


def test_text_typed_while_disconnected_is_kept_marked_and_sent_when_back(
    browser_pages: tuple[Page, Page],
) -> None:
    page, _ = browser_pages
    port = free_port()
    with serve_process(port):
        page.goto(f"http://127.0.0.1:{port}/")
        expect(page.locator("#status")).to_have_text("connected")
    expect(page.locator("#status")).to_contain_text("retrying in")
    expect(page.locator("#status")).not_to_contain_text("(1006)")  # plain words
    send(page, "typed while away")
    expect(page.locator("#messages li.unsent")).to_have_text(["typed while away"])
    with serve_process(port):
        expect(page.locator("#status")).to_have_text("connected")
        expect(page.locator("#messages li.unsent")).to_have_count(0)
        expect(page.locator("#messages li.mine")).to_have_text(["typed while away"])


# -- the chat page at work (issue 28, item 7) ------------------------------------------


def join(port: int, *pages_and_paths: tuple[Page, str]) -> None:
    """Open each page at its path on *port*, and wait until each is connected."""
    for page, path in pages_and_paths:
        page.goto(f"http://127.0.0.1:{port}{path}")
    for page, _ in pages_and_paths:
        expect(page.locator("#status")).to_have_text("connected")


def test_messages_show_the_senders_name_when_the_frame_carries_one(
    browser_pages: tuple[Page, Page],
) -> None:
    """The page's side of ``from``: a stand-in server (Playwright's WebSocket route)
    sends one message with a sender and one without."""
    page, _ = browser_pages
    port = free_port()

    def stand_in(ws: WebSocketRoute) -> None:
        frames: list[dict[str, object]] = [
            {"type": "joined", "room": "", "offset": 0, "epoch": "e1", "history": 0},
            {
                "type": "message",
                "room": "",
                "offset": 1,
                "time": 1.0,
                "text": "hi",
                "from": "alice",
            },
            {"type": "message", "room": "", "offset": 2, "time": 2.0, "text": "anonymous"},
            {"type": "message", "room": "", "offset": 3, "time": 3.0, "text": "odd", "from": 7},
        ]
        for frame in frames:
            ws.send(json.dumps(frame))

    with serve_process(port):
        page.route_web_socket(re.compile(r"^ws://"), stand_in)
        page.goto(f"http://127.0.0.1:{port}/")
        items = page.locator("#messages li")
        expect(items).to_have_text(["hi", "anonymous", "odd"])
        expect(items.nth(0)).to_have_attribute("data-from", "alice")
        shown = items.nth(0).evaluate("li => getComputedStyle(li, '::before').content")
        assert shown.startswith('"alice · '), shown
        for other in (items.nth(1), items.nth(2)):  # no name, or not a string: none shown
            expect(other).not_to_have_attribute("data-from", re.compile(".*"))


def test_two_pages_chat_by_name_at_desktop_size(browser_pages: tuple[Page, Page]) -> None:
    """What docs/chat.png shows (TRIO_WS_DEMO_SCREENSHOT=docs/chat.png refreshes it)."""
    alice, bob = browser_pages
    for page in (alice, bob):
        page.set_viewport_size({"width": 1000, "height": 560})
    port = free_port()
    lines = [
        (alice, "morning! the 10:00 deploy is out"),
        (bob, "thanks, any errors?"),
        (alice, "none so far: 0 failed, 410 passed"),
        (bob, "great, I'll tell the others in #ops"),
    ]
    with serve_process(port, "--history", "10"):
        join(port, (alice, "/team?name=alice"), (bob, "/team?name=bob"))
        expect(bob.locator("#people li")).to_have_text(["alice", "bob"])
        for page, text in lines:
            send(page, text)
            expect(bob.locator("#messages li").last).to_have_text(text)
        theirs = bob.locator("#messages li:not(.mine)")
        expect(theirs).to_have_text([lines[0][1], lines[2][1]])
        for index in (0, 1):
            expect(theirs.nth(index)).to_have_attribute("data-from", "alice")
        expect(bob.locator("#messages li.mine")).to_have_text([lines[1][1], lines[3][1]])
        if SCREENSHOT:
            bob.screenshot(path=SCREENSHOT)


def test_someone_elses_same_text_is_not_taken_for_ones_own(
    browser_pages: tuple[Page, Page],
) -> None:
    """bob's "hi" arrives before alice's own "hi" comes back: it is bob's, not hers."""
    page, _ = browser_pages
    port = free_port()

    def stand_in(ws: WebSocketRoute) -> None:
        joined = {"type": "joined", "room": "", "offset": 0, "epoch": "e1", "history": 0}
        ws.send(json.dumps(joined))

        def echo(text: str | bytes) -> None:
            for offset, sender in ((1, "bob"), (2, "alice")):
                frame = {"type": "message", "room": "", "offset": offset, "time": 1.0}
                ws.send(json.dumps({**frame, "text": text, "from": sender}))

        ws.on_message(echo)

    with serve_process(port):
        page.route_web_socket(re.compile(r"^ws://"), stand_in)
        join(port, (page, "/?name=alice"))
        send(page, "hi")
        items = page.locator("#messages li")
        expect(items).to_have_text(["hi", "hi"])
        expect(items.nth(0)).to_have_attribute("data-from", "bob")
        expect(items.nth(0)).not_to_have_class("mine")
        expect(items.nth(1)).to_have_class("mine")


def test_sender_names_on_a_real_server(browser_pages: tuple[Page, Page]) -> None:
    """End to end: the server stamps the sender's ``?name=`` in ``from``, and the other
    page shows it (one's own messages need no name)."""
    alice, bob = browser_pages
    port = free_port()
    with serve_process(port):
        join(port, (alice, "/team?name=alice"), (bob, "/team?name=bob"))
        with connect(f"ws://127.0.0.1:{port}/team", subprotocols=["trio-ws-demo.v1"]) as raw:
            assert json.loads(raw.recv(timeout=10))["type"] == "joined"
            send(alice, "who said this?")
            while (frame := json.loads(raw.recv(timeout=10)))["type"] != "message":
                pass
        assert frame["from"] == "alice", frame
        item = bob.locator("#messages li", has_text="who said this?")
        expect(item).to_have_attribute("data-from", "alice")
        expect(alice.locator("#messages li.mine")).to_have_text(["who said this?"])
        expect(alice.locator("#messages li.mine")).not_to_have_attribute(
            "data-from", re.compile(".*")
        )


def test_a_token_typed_in_is_kept_in_the_tab_and_never_in_the_address(
    browser_pages: tuple[Page, Page],
) -> None:
    typed, linked = browser_pages
    port = free_port()
    with serve_process(port, "--token", "s3cret"):
        typed.goto(f"http://127.0.0.1:{port}/ops")
        expect(typed.locator("#status")).to_have_attribute("data-state", "unauthorized")
        expect(typed.locator("#input")).to_be_disabled()
        expect(typed.locator("#rooms option")).to_have_text(["#ops"])  # not an empty box
        typed.fill("#token", "s3cret")
        typed.press("#token", "Enter")
        expect(typed.locator("#status")).to_have_text("connected")
        expect(typed.locator("#input")).to_be_enabled()
        assert "token" not in typed.url
        assert typed.evaluate("sessionStorage.getItem('trio-ws-demo-token')") == "s3cret"
        assert typed.evaluate("localStorage.length") == 0
        typed.reload()  # the tab remembers it
        expect(typed.locator("#status")).to_have_text("connected")
        # The ?token= link still works, and leaves the address bar at once.
        linked.goto(f"http://127.0.0.1:{port}/ops?name=lin&token=s3cret")
        expect(linked.locator("#status")).to_have_text("connected")
        assert linked.url == f"http://127.0.0.1:{port}/ops?name=lin"
        assert linked.locator("#token").input_value() == "s3cret"
        send(linked, "with a linked token")
        expect(typed.locator("#messages li")).to_have_text(["with a linked token"])


def test_refused_pages_take_the_input_away_and_say_why(browser_pages: tuple[Page, Page]) -> None:
    page, reader = browser_pages
    port = free_port()
    with serve_process(port):
        join(port, (page, "/ops"))
    send(page, "typed while away")
    expect(page.locator("#messages li.unsent")).to_have_text(["typed while away"])
    with serve_process(port, "--token", "s3cret"):  # back, but now behind a token
        expect(page.locator("#status")).to_have_attribute("data-state", "unauthorized")
        expect(page.locator("#status")).to_have_text(
            "not authorized (missing or wrong token): enter a token"
        )
        expect(page.locator("#input")).to_be_disabled()
        expect(page.locator("#input")).to_have_attribute("placeholder", re.compile("^not auth"))
        # Not queued for ever: it says it was not sent, and why.
        expect(page.locator("#messages li.unsent")).to_have_count(0)
        failed = page.locator("#messages li.failed")
        expect(failed).to_have_text(["typed while away"])
        after = failed.evaluate("li => getComputedStyle(li, '::after').content")
        assert "not sent: not authorized (missing or wrong token)" in after, after
    with serve_process(port, "--jwt-key", JWT_KEY):  # a token for another room: 403
        reader.goto(f"http://127.0.0.1:{port}/ops?token={signed_token('viewer', {'news': 'r'})}")
        expect(reader.locator("#status")).to_have_text(
            "not authorized (not allowed to read this room): enter another token"
        )
        expect(reader.locator("#input")).to_be_disabled()


def test_the_room_list_follows_rooms_made_after_the_page_opened(
    browser_pages: tuple[Page, Page],
) -> None:
    alice, bob = browser_pages
    port = free_port()

    def publish(room: str) -> None:
        argv = [sys.executable, "-m", "trio_ws_demo", "echo", f"ws://127.0.0.1:{port}/{room}", "x"]
        assert subprocess.run(argv, capture_output=True, timeout=20).returncode == 0

    with serve_process(port, "--history", "10"):
        join(port, (alice, "/lobby?name=alice"))
        expect(alice.locator("#rooms option")).to_have_text(["#lobby"])
        publish("ops")  # a room with history now, in which alice is not
        bob.goto(f"http://127.0.0.1:{port}/lobby?name=bob")  # presence in alice's room
        expect(alice.locator("#rooms option")).to_have_text(["#lobby", "#ops"])
        publish("dev")
        alice.focus("#rooms")  # about to pick a room: the list is fetched again
        expect(alice.locator("#rooms option")).to_have_text(["#dev", "#lobby", "#ops"])
        expect(alice.locator("#rooms")).to_have_value("lobby")


def test_who_is_here_is_marked_stale_while_disconnected(browser_pages: tuple[Page, Page]) -> None:
    alice, bob = browser_pages
    port = free_port()
    with serve_process(port):
        join(port, (alice, "/lobby?name=alice"), (bob, "/lobby?name=bob"))
        expect(alice.locator("#count")).to_have_text("who is here (2)")
        expect(alice.locator("aside")).not_to_have_class(re.compile("stale"))
    expect(alice.locator("#status")).to_have_attribute("data-state", "closed")
    expect(alice.locator("aside")).to_have_class(re.compile("stale"))
    expect(alice.locator("#count")).to_have_text(
        re.compile(r"^who was here \(\d\) · not connected$")
    )
    bob.close()
    with serve_process(port):
        expect(alice.locator("#status")).to_have_text("connected")
        expect(alice.locator("#count")).to_have_text("who is here (1)")
        expect(alice.locator("#people li")).to_have_text(["alice"])
        expect(alice.locator("aside")).not_to_have_class(re.compile("stale"))


def test_a_new_name_takes_effect_quietly(browser_pages: tuple[Page, Page]) -> None:
    page, other = browser_pages
    port = free_port()
    with serve_process(port):
        join(port, (page, "/lobby?name=alice"), (other, "/lobby?name=bob"))
        send(page, "hi")
        expect(page.locator("#messages li")).to_have_text(["hi"])
        page.fill("#name", "alicia")
        page.press("#name", "Enter")
        expect(other.locator("#people li")).to_have_text(["bob", "alicia"])
        expect(page.locator("#people li")).to_have_text(["bob", "alicia"])
        expect(page.locator("#status")).to_have_text("connected")
        send(page, "as alicia")
        expect(other.locator("#messages li")).to_have_text(["hi", "as alicia"])
        expect(page.locator("#messages li")).to_have_text(["hi", "as alicia"])  # no note
        assert page.url.endswith("/lobby?name=alicia")  # a reload keeps it


def test_the_page_is_usable_at_phone_width(browser_pages: tuple[Page, Page]) -> None:
    page, other = browser_pages
    page.set_viewport_size({"width": 360, "height": 740})
    port = free_port()
    long = "a message of some length, to see where a phone's screen wraps it"
    with serve_process(port):
        join(port, (page, "/lobby?name=alice"), (other, "/lobby?name=bob"))
        send(other, long)
        send(page, "short")
        expect(page.locator("#messages li")).to_have_text([long, "short"])
        sizes = page.evaluate(
            """() => {
              const box = (sel) => document.querySelector(sel).getBoundingClientRect();
              const status = document.querySelector('#status');
              return {
                page: document.documentElement.scrollWidth,
                status: [box('#status').left, box('#status').right,
                         status.scrollWidth, status.clientWidth],
                message: box('#messages li').width,
                messages: box('#messages').width,
                input: box('#input').width,
                send: box('form button').right,
                aside: box('aside').height,
              };
            }"""
        )
        print("at 360 px:", sizes)
        assert sizes["page"] <= 360, sizes  # nothing sticks out sideways
        left, right, scroll, client = sizes["status"]
        assert left >= 0 and right <= 360 and scroll <= client, sizes  # "connected", whole
        assert sizes["messages"] >= 330, sizes  # the messages get the width
        assert sizes["message"] >= 260, sizes  # a long one wraps at ~40 characters, not 12
        assert sizes["input"] >= 150 and sizes["send"] <= 360, sizes
        assert sizes["aside"] <= 100, sizes  # who is here: a strip, not half the screen


def test_an_expired_token_takes_the_input_away_until_a_new_one_is_typed(
    browser_pages: tuple[Page, Page],
) -> None:
    page, _ = browser_pages
    port = free_port()
    with serve_process(port, "--jwt-key", JWT_KEY):
        join(port, (page, f"/news?token={signed_token('ed', {'news': 'rw'}, seconds=3)}"))
        expect(page.locator("#count")).to_have_text("who is here (1)")
        expect(page.locator("#status")).to_have_text("your token expired: enter a new one")
        expect(page.locator("#input")).to_be_disabled()
        expect(page.locator("aside")).to_have_class(re.compile("stale"))
        page.fill("#token", signed_token("ed", {"news": "rw"}))
        page.press("#token", "Enter")
        expect(page.locator("#status")).to_have_text("connected")
        expect(page.locator("#input")).to_be_enabled()
        expect(page.locator("aside")).not_to_have_class(re.compile("stale"))


def test_text_sent_on_reconnect_is_drawn_after_the_reconnect_note(
    browser_pages: tuple[Page, Page],
) -> None:
    page, _ = browser_pages
    port = free_port()
    with serve_process(port, "--history", "10"):
        join(port, (page, "/ops"))
    send(page, "typed while away")
    expect(page.locator("#messages li.unsent")).to_have_text(["typed while away"])
    with serve_process(port, "--history", "10"):  # a new process: its history is new
        expect(page.locator("#messages li")).to_have_text(
            [
                "reconnected, the server lost its history: messages may be missing",
                "typed while away",
            ]
        )


_DEFLATE_SCRIPT = """async ([url, count]) => {
  const words = 'the of and to in is that it for was on are as with his they at be'.split(' ');
  const messages = Array.from({length: count}, (_, n) => JSON.stringify(
    {type: 'chat', n, text: Array.from({length: 12 + n % 17}, (_, i) => words[(n * 7 + i * 3) % words.length]).join(' ')}));
  const open = (ws) => new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = fail; });
  const sender = new WebSocket(url);
  await open(sender);
  const got = {sender: [], joiner: []};
  let joiner = null, next = 0;
  await new Promise((done) => {
    const check = () => { if (got.sender.length === count && got.joiner.length === count / 2) done(); };
    sender.onmessage = async (event) => {
      got.sender.push(event.data);
      if (got.sender.length === count / 2) {
        joiner = new WebSocket(url);
        joiner.onmessage = (e) => { got.joiner.push(e.data); check(); };
        await open(joiner);
      }
      check();
      if (next < count) sender.send(messages[next++]);
    };
    sender.send(messages[next++]);
  });
  const same = (a, b) => a.length === b.length && a.every((m, i) => m === b[i]);
  return {extensions: [sender.extensions, joiner.extensions],
          sender: same(got.sender, messages), joiner: same(got.joiner, messages.slice(count / 2))};
}"""


@pytest.mark.parametrize("mode", ["stateless", "room"])
def test_chromium_reads_every_compressed_frame_a_joiner_too(
    browser_pages: tuple[Page, Page], mode: str
) -> None:
    """Chromium offers permessage-deflate by itself; both of its sockets read
    every broadcast exactly, the one that joins halfway through too."""
    page, _ = browser_pages
    port = free_port()
    with serve_process(port, "--compression", mode):
        page.goto(f"http://127.0.0.1:{port}/healthz")
        result = page.evaluate(_DEFLATE_SCRIPT, [f"ws://127.0.0.1:{port}/deflate", 200])
    agreed = "permessage-deflate; client_no_context_takeover" + (
        "; server_no_context_takeover" if mode == "stateless" else ""
    )
    assert result == {"extensions": [agreed, agreed], "sender": True, "joiner": True}
