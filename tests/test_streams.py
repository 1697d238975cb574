"""The backplane's stream format without a Redis: key names, entry IDs, and an entry's fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from trio_ws_demo.backplane.streams import (
    LIBRARY,
    PUBLISH_FUNCTION,
    Entry,
    MalformedEntry,
    alive_key,
    decode_entry,
    entry_fields,
    format_id,
    members_key,
    messages_in,
    parse_id,
    room_of_key,
    stream_key,
    wake_key,
)


def as_redis_returns(fields: list[str | bytes | int]) -> dict[bytes, bytes]:
    """*fields* (in XADD order) as XREAD gives them back: bytes to bytes."""

    def raw(value: str | bytes | int) -> bytes:
        return value if isinstance(value, bytes) else str(value).encode()

    return {raw(fields[i]): raw(fields[i + 1]) for i in range(0, len(fields), 2)}


@dataclass
class FakeEntry:
    identifier: bytes
    field_values: Any


def test_key_names() -> None:
    assert stream_key("lobby") == "trio-ws-demo:room:lobby"
    assert room_of_key(stream_key("a:b")) == "a:b"
    assert wake_key("f00d") == "trio-ws-demo:wake:f00d"
    assert members_key("lobby") == "trio-ws-demo:members:lobby"
    assert alive_key("p1") == "trio-ws-demo:alive:p1"


def test_the_library_registers_the_publish_function() -> None:
    assert LIBRARY.startswith("#!lua name=trio_ws_demo\n")
    assert f"function_name = '{PUBLISH_FUNCTION}'" in LIBRARY


def test_stream_ids_are_epoch_and_offset() -> None:
    assert parse_id(b"1764600000000-42") == (1764600000000, 42)
    assert parse_id(format_id((1764600000000, 7))) == (1764600000000, 7)
    with pytest.raises(ValueError):
        parse_id(b"nonsense")


@pytest.mark.parametrize("message", ["héllo", b"\x00\xff binary"])
def test_an_entry_round_trips(message: str | bytes) -> None:
    fields = entry_fields(message, 1764600000.1234, b"writer1", 17, "zoë")
    entry = decode_entry(as_redis_returns(fields))
    assert entry == Entry(message, 1764600000.123, b"writer1", 17, "zoë")


def test_an_epoch_marker_is_no_message() -> None:
    assert decode_entry({b"e": b"1"}) is None


@pytest.mark.parametrize(
    "fields",
    [
        {b"x": b"1"},  # no message
        {b"m": b"hi", b"t": b"soon"},  # not a time
        {b"m": b"hi", b"s": b"x"},  # not a sequence number
        {b"m": b"\xff\xfe", b"b": b"0"},  # text that is not UTF-8
        [b"m", b"hi"],  # not a mapping
    ],
)
def test_a_malformed_entry_is_reported_as_such(fields: Any) -> None:
    with pytest.raises(MalformedEntry):
        decode_entry(fields)


def test_messages_in_an_epoch_skip_markers_and_count_malformed() -> None:
    def message(offset: int, text: str, epoch: int = 5) -> FakeEntry:
        fields = as_redis_returns(entry_fields(text, 1.0, b"w", offset))
        return FakeEntry(format_id((epoch, offset)).encode(), fields)

    entries = [
        FakeEntry(b"5-0", {b"e": b"1"}),
        message(1, "one"),
        FakeEntry(b"5-2", {b"nothing": b"here"}),
        FakeEntry(b"garbage", {}),
        message(3, "three"),
        message(1, "elsewhere", epoch=4),
    ]
    messages, size, skipped = messages_in(entries, 5)
    assert messages == [(1, 1.0, "one", ""), (3, 1.0, "three", "")]
    assert size == len("one") + len("three")
    assert skipped == 2
