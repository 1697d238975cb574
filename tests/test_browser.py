"""The chat page in a real browser: Playwright driving Debian's Chromium, headless.

Two pages and one ``echo --listen`` client talk through a real server process;
``<script>`` renders as text; a page reconnects after the server restarts on
the same port. CI installs Chromium (``.ci/run``) and sets CI=true, so there a
missing browser is a failure, not a skip.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serve_process(port: int) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "trio_ws_demo", "serve", "--port", str(port)],
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
            if SCREENSHOT:
                first.screenshot(path=SCREENSHOT)
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
    with serve_process(port):
        expect(page.locator("#status")).to_have_text("connected")
        send(page, "after the restart")
        expect(page.locator("#messages li.mine")).to_have_text(["after the restart"])
