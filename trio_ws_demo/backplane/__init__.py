"""The Redis backplane: one order for every room across server processes.

:mod:`.link` is the link to Redis (its heartbeat, writer, reader and room
loader), :mod:`.streams` the format in Redis (key names, the Redis functions,
an entry's fields; pure), :mod:`.outbound` what waits for Redis and the
receipts, :mod:`.faults` which errors mean a lost link, :mod:`.feeds` the
state of one room's feed and its table, :mod:`.members` who is in a room
across processes. Only the server's lifecycle builds it; nothing else in the
package imports coredis.
"""

from ..errors import BackplaneUnavailable as BackplaneUnavailable
from ..stats import BackplaneStatistics as BackplaneStatistics
from .link import BACKFILL_BYTES as BACKFILL_BYTES
from .link import RedisBackplane as RedisBackplane
from .outbound import Receipt as Receipt

__all__ = [
    "BACKFILL_BYTES",
    "BackplaneStatistics",
    "BackplaneUnavailable",
    "Receipt",
    "RedisBackplane",
]
