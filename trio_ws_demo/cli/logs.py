"""Log formatting for the command line: a readable line, or one JSON object a line.

The library only logs (to ``trio_ws_demo.server``); it never configures
logging. Lifecycle lines carry structured fields through ``extra=`` (for
example ``event``, ``peer``, ``code``, ``duration_s``), which the JSON format
emits as keys. Nothing here ever sees the token: the server redacts it first.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from ..redact import escape

__all__ = ["FIELDS", "InstanceFilter", "JsonFormatter", "TextFormatter", "configure"]

#: Structured fields a log record may carry, in the order they are written.
FIELDS = (
    "event",
    "url",
    "peer",
    "proxy",
    "method",
    "path",
    "room",
    "status",
    "end",
    "code",
    "reason",
    "bytes",
    "duration_s",
    "duration_ms",
    "messages_in",
    "messages_out",
    "dropped",
    "slow",
    "clients",
)


class InstanceFilter(logging.Filter):
    """Names the server process on every record (``instance``): with several
    processes behind one Redis, an operator must know which one said what."""

    def __init__(self, instance: str = "") -> None:
        super().__init__()
        self.instance = instance

    def filter(self, record: logging.LogRecord) -> bool:
        record.instance = self.instance
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        instance = getattr(record, "instance", "")
        if instance:
            data["instance"] = instance
        for name in FIELDS:
            if hasattr(record, name):
                data[name] = getattr(record, name)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class TextFormatter(logging.Formatter):
    """One readable line per record: control characters and Unicode line
    separators in the message are escaped, so nothing a peer sends can start
    a line of its own (a traceback, added after, keeps its lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape(super().formatMessage(record))


def configure(level: str, fmt: str, instance: InstanceFilter | None = None) -> None:
    """Send log records to stderr, as text or JSON lines, each naming *instance*."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(instance or InstanceFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            TextFormatter("%(asctime)s %(levelname)s [%(instance)s] %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # coredis logs every failed reconnect at ERROR with a traceback; the backplane
    # says it once (WARNING lost, INFO back). Its own lines show with --log-level debug.
    logging.getLogger("coredis").setLevel(logging.DEBUG if level == "debug" else logging.CRITICAL)
