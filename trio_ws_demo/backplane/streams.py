"""The backplane's format in Redis: key names, the Redis functions, and a stream entry's fields.

Pure (no coredis, no I/O), so that the format can be read and tested without a
Redis: :mod:`.link` and :mod:`.members` send and read what is defined here, and
nothing else in the package spells a key or a field.

Keys (all under :data:`PREFIX`):

- ``trio-ws-demo:room:NAME``: a room's stream (:func:`stream_key`);
- ``trio-ws-demo:wake:TOKEN``: one reader's wake stream (:func:`wake_key`);
- ``trio-ws-demo:members:NAME`` and ``trio-ws-demo:alive:PROCESS``: presence
  across processes (see :mod:`.members`).

A room's stream has one order, and its entry IDs are ``EPOCH-OFFSET``
(:data:`StreamId`): an epoch's marker entry ``EPOCH-0`` (field ``e``), then its
messages ``EPOCH-1``, ``EPOCH-2``, …, written by :data:`LIBRARY`'s
``trio_ws_demo_publish``. A message entry's fields are ``m`` (the message),
``b`` (``1`` if it is binary), ``t`` (its time), ``w`` (the writer's id),
``s`` (the writer's sequence number) and ``f`` (who sent it: the envelope's
``from``, so every process stamps the same name), see :func:`entry_fields` and
:func:`decode_entry`; every entry also has ``c``, the stream's running total
of message bytes, which the publish function writes and reads (its bounds).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from ..rooms import Kept

# Its exception is for the backplane only (never reaches a caller of the
# library), so it is not exported: see tests/test_errors.py.
__all__ = [
    "FENCE_FUNCTION",
    "LIBRARY",
    "LIBRARY_NAME",
    "PREFIX",
    "PUBLISH_FUNCTION",
    "Entry",
    "StreamId",
    "alive_key",
    "decode_entry",
    "entry_fields",
    "format_id",
    "idempotency_key",
    "members_key",
    "messages_in",
    "parse_id",
    "room_of_key",
    "stream_key",
    "text",
    "wake_key",
]

PREFIX = "trio-ws-demo"
#: A sender name read back is cut to this many characters (a ``?name=`` has at
#: most 64; a message is never lost for its name).
MAX_SENDER = 256

# -- key names ------------------------------------------------------------------


def stream_key(room: str) -> str:
    """The key of *room*'s stream."""
    return f"{PREFIX}:room:{room}"


def room_of_key(key: str) -> str:
    """The room whose stream is *key* (the inverse of :func:`stream_key`)."""
    return key.removeprefix(f"{PREFIX}:room:")


def wake_key(token: str) -> str:
    """The key of a reader's wake stream (see ``RedisBackplane._poke``)."""
    return f"{PREFIX}:wake:{token}"


def idempotency_key(room: str, key: str) -> str:
    """Where a keyed publish in *room* landed, for the idempotency window (it
    expires): the Redis publish function answers a repeat from it."""
    return f"{PREFIX}:idem:{room}:{key}"


def members_key(room: str) -> str:
    """The hash of *room*'s members on every process."""
    return f"{PREFIX}:members:{room}"


def alive_key(process: str) -> str:
    """The key that says *process* is alive (it expires)."""
    return f"{PREFIX}:alive:{process}"


# -- the Redis functions --------------------------------------------------------

LIBRARY_NAME = "trio_ws_demo"
FENCE_FUNCTION = "trio_ws_demo_fence"
PUBLISH_FUNCTION = "trio_ws_demo_publish"

#: The functions every process loads (``FUNCTION LOAD REPLACE``).
#:
#: **Epochs.** A stream's epoch is the major part of its newest entry's ID. A
#: missing stream gets a new one when it is first written (Redis's clock in
#: ms, above any ID the stream ever had and above what the writer has seen)
#: with a marker entry ``EPOCH-0``, so messages are ``EPOCH-1``, ``EPOCH-2``, …
#: Nothing but a publish creates a stream: following a room writes nothing.
#:
#: **The fence.** Each caller passes the highest ID it has read from the
#: stream. If the stream's newest entry is below it, Redis has forgotten
#: entries someone read (it restarted from a snapshot, or a replica that lagged
#: was promoted), and the offsets after its newest entry were already given to
#: other messages: a new epoch begins before anything is written, so that no
#: offset names two messages, and resumes across it say ``recovered: false``.
#: ``trio_ws_demo_fence`` does only that (a room loaded after a reconnect);
#: ``trio_ws_demo_publish`` does it before each write.
#:
#: **Bounds.** Every entry carries ``c``, the running total of message bytes
#: written to the stream, so that the bytes held from an entry on are
#: ``total - (c - size)``: a publish trims the oldest entries while the stream
#: holds more than its byte bound (never the newest), and by count with
#: ``MAXLEN ~``; it refreshes the key's TTL, so a room nobody writes to leaves
#: Redis. Neither function is ``allow-oom``: past ``maxmemory`` Redis refuses
#: them, and nothing is written.
#:
#: **Once.** With a second key (:func:`idempotency_key`), a publish whose key
#: is there writes nothing and answers the ID it names; else it writes, and
#: sets the key to the new ID for the window (``PX``): the check and the write
#: are one step, so a retry to another process publishes once.
#:
#: **Time.** The publish function stamps the entry's ``t`` with Redis's own
#: clock (``TIME``), whatever the writer sent: every process then measures a
#: message's age (the delivery-lag histogram, the history's age) against one
#: clock, not against each publishing host's.
#:
#: ``trio_ws_demo_publish``'s arguments: MAXLEN, the byte bound, the TTL in ms
#: (0: none), the caller's seen ID, the idempotency window in ms, then the
#: entry's fields (:func:`entry_fields`, the message first).
#: ``trio_ws_demo_fence``'s: the seen ID; it answers 1 if it began a new epoch.
LIBRARY = """#!lua name=trio_ws_demo
local function id_of(text)
  local epoch, offset = string.match(text, '^(%d+)%-(%d+)$')
  return tonumber(epoch), tonumber(offset)
end

local function field(entry, name)
  local values = entry[2]
  for i = 1, #values, 2 do
    if values[i] == name then return values[i + 1] end
  end
  return nil
end

local function total_of(entry)
  return tonumber(field(entry, 'c')) or 0
end

local function start_epoch(key, floor, total)
  local now = redis.call('TIME')
  local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  if ms <= floor then ms = floor + 1 end
  if redis.call('EXISTS', key) == 1 then
    local info = redis.call('XINFO', 'STREAM', key)
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then
        local top = id_of(info[i + 1])
        if top >= ms then ms = top + 1 end
      end
    end
  end
  local epoch = string.format('%.0f', ms)
  redis.call('XADD', key, epoch .. '-0', 'c', string.format('%.0f', total), 'e', '1')
  return epoch
end

-- The epoch to write in, and the stream's running total: a new epoch if the
-- stream is missing, or if its newest entry is below what the caller has seen.
local function writable(key, seen)
  local seen_epoch, seen_offset = id_of(seen)
  local newest = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
  if not newest then
    return start_epoch(key, seen_epoch, 0), 0, true
  end
  local epoch, offset = id_of(newest[1])
  local total = total_of(newest)
  if epoch > seen_epoch or (epoch == seen_epoch and offset >= seen_offset) then
    return string.format('%.0f', epoch), total, false
  end
  return start_epoch(key, math.max(epoch, seen_epoch), total), total, true
end

local PAGE = 32
local function trim_bytes(key, total, max_bytes)
  while true do
    local page = redis.call('XRANGE', key, '-', '+', 'COUNT', PAGE)
    local n = #page
    if n == 0 then return end
    local keep = page[n][1]
    for i = 1, n do
      local entry = page[i]
      local size = #(field(entry, 'm') or '')
      if total - (total_of(entry) - size) <= max_bytes then
        keep = entry[1]
        break
      end
    end
    if keep ~= page[1][1] then redis.call('XTRIM', key, 'MINID', keep) end
    if keep ~= page[n][1] or n < PAGE then return end
  end
end

redis.register_function{
  function_name = 'trio_ws_demo_fence',
  callback = function(keys, args)
    local newest = redis.call('XREVRANGE', keys[1], '+', '-', 'COUNT', 1)[1]
    if not newest then return 0 end
    local _, _, fenced = writable(keys[1], args[1])
    if fenced then return 1 end
    return 0
  end,
}

redis.register_function{
  function_name = 'trio_ws_demo_publish',
  callback = function(keys, args)
    local key = keys[1]
    if keys[2] then
      local earlier = redis.call('GET', keys[2])
      if earlier then return earlier end
    end
    local max_bytes, ttl = tonumber(args[2]), tonumber(args[3])
    local epoch, total = writable(key, args[4])
    total = total + #args[7]
    local now = redis.call('TIME')  -- the entry's time is Redis's: one clock for every host
    for i = 6, #args - 1, 2 do
      if args[i] == 't' then
        args[i + 1] = string.format('%s.%03d', now[1], math.floor(tonumber(now[2]) / 1000))
      end
    end
    local id = redis.call('XADD', key, 'MAXLEN', '~', args[1], epoch .. '-*',
      'c', string.format('%.0f', total), unpack(args, 6))
    if keys[2] then redis.call('SET', keys[2], id, 'PX', args[5]) end
    local oldest = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)[1]
    if total - (total_of(oldest) - #(field(oldest, 'm') or '')) > max_bytes then
      trim_bytes(key, total, max_bytes)
    end
    if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
    return id
  end,
}
"""

# -- entry IDs ------------------------------------------------------------------

#: A stream entry ID: (epoch, offset).
StreamId = tuple[int, int]


def parse_id(identifier: bytes | str) -> StreamId:
    """``b"EPOCH-OFFSET"`` as numbers; ValueError for anything else."""
    text = identifier.decode() if isinstance(identifier, bytes) else identifier
    epoch, _, offset = text.partition("-")
    return int(epoch), int(offset)


def format_id(identifier: StreamId) -> str:
    """``(epoch, offset)`` as Redis writes it: ``"EPOCH-OFFSET"``."""
    return f"{identifier[0]}-{identifier[1]}"


def text(value: Any) -> str:
    """A reply from Redis (bytes, or already text) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


# -- an entry's fields, in and out ----------------------------------------------


class MalformedEntry(ValueError):
    """A stream entry that is not one of ours (a reader skips it and counts it)."""


class Entry(NamedTuple):
    """A message entry, read back."""

    message: str | bytes
    at: float
    """When it was sent (seconds since the epoch, to the ms)."""
    writer: bytes
    """The id of the process that wrote it."""
    seq: int
    """That writer's sequence number."""
    sender: str = ""
    """Who sent it (the v1 envelope's ``from``)."""


def entry_fields(
    message: str | bytes, at: float, writer: bytes, seq: int, sender: str = ""
) -> list[str | bytes | int]:
    """A message entry's fields and values, in ``XADD`` order (the message
    first: the publish function sizes it)."""
    binary = isinstance(message, bytes)
    return [
        b"m",
        message,
        b"b",
        b"1" if binary else b"0",
        b"t",
        f"{at:.3f}",
        b"w",
        writer,
        b"s",
        seq,
        b"f",
        sender.encode(),
    ]


def decode_entry(fields: Any) -> Entry | None:
    """A message entry's message, time, writer and sequence; None for an
    epoch's marker. Raises :class:`MalformedEntry` for an entry that is not ours."""
    try:
        message = fields.get(b"m")
        if message is None and b"e" in fields:
            return None
        if not isinstance(message, bytes):
            raise MalformedEntry("no message")
        at = float(fields.get(b"t", b"0") or 0)
        writer = fields.get(b"w", b"")
        seq = int(fields.get(b"s", b"0") or 0)
        sender = fields.get(b"f", b"").decode("utf-8")[:MAX_SENDER]  # never lost for it
        if fields.get(b"b") == b"1":
            return Entry(message, at, writer, seq, sender)
        return Entry(message.decode("utf-8"), at, writer, seq, sender)
    except MalformedEntry:
        raise
    except (ValueError, TypeError, AttributeError) as exc:  # UnicodeDecodeError too
        raise MalformedEntry(f"{type(exc).__name__}: {exc}") from exc


def messages_in(entries: Iterable[Any], epoch: int) -> tuple[list[Kept], int, int]:
    """The messages among *entries* (each with ``identifier`` and
    ``field_values``, as coredis reads them) in *epoch*, as :class:`Kept`;
    their size in bytes; and how many entries were malformed (left
    out, as are markers and other epochs' entries)."""
    messages: list[Kept] = []
    size = skipped = 0
    for entry in entries:
        try:
            identifier = parse_id(entry.identifier)
            parsed = decode_entry(entry.field_values)
        except (ValueError, TypeError, AttributeError):
            skipped += 1
            continue
        if parsed is None or identifier[0] != epoch:
            continue
        messages.append(Kept(identifier[1], parsed.at, parsed.message, parsed.sender))
        size += len(parsed.message)
    return messages, size, skipped
