"""Frames we encode once must be byte-identical to what wsproto would send."""

from __future__ import annotations

import pytest
from wsproto.frame_protocol import FrameProtocol

from trio_ws_demo.frames import encode_frame, is_close_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_binary_frames_match_wsproto(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    expected = FrameProtocol(client=False, extensions=[]).send_data(payload, fin=True)
    assert encode_frame(payload) == expected


@pytest.mark.parametrize("text", ["", "Hello, WebSocket!", "héllo ☃ 🎉", "x" * 70_000])
def test_text_frames_match_wsproto(text: str) -> None:
    expected = FrameProtocol(client=False, extensions=[]).send_data(text, fin=True)
    assert encode_frame(text) == expected


def test_close_frames_are_recognised() -> None:
    close = FrameProtocol(client=False, extensions=[]).close(1000, "bye")
    assert is_close_frame(close)
    assert not is_close_frame(encode_frame("x"))
    assert not is_close_frame(b"")
