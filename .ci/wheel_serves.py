"""Run by .ci/run with the built wheel installed alone: serve, fetch the chat
page (package data), echo through the client package, stop with SIGINT."""

import signal
import subprocess
import sys
import urllib.request

server = subprocess.Popen(
    [sys.executable, "-m", "trio_ws_demo", "serve", "--port", "0"],
    stdout=subprocess.PIPE,
    text=True,
)
assert server.stdout is not None
line = server.stdout.readline()
assert line.startswith("Listening on ws://127.0.0.1:"), line
url = line.split()[2].rstrip(",")
try:
    page = urllib.request.urlopen(url.replace("ws://", "http://") + "/", timeout=10)
    assert page.status == 200 and b"<html" in page.read().lower()
    echo = subprocess.run(
        [sys.executable, "-m", "trio_ws_demo", "echo", url, "from the wheel"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert echo.returncode == 0, echo
    assert "Server sent:  from the wheel" in echo.stdout, echo.stdout
finally:
    server.send_signal(signal.SIGINT)
assert server.wait(timeout=15) == 0
print(f"the wheel serves: {url}")
