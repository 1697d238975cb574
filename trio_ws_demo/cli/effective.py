"""The effective settings, for people: ``serve --print-config`` and the
``Settings:`` line after ``Listening on``.

Both show secrets as ``***`` and Redis URLs with their password hidden
(:func:`~..redact.redact_url`): they end up in terminals, logs and tickets.
``--print-config`` is TOML that can be fed back with ``--config``; a value it
cannot show as it is (a masked secret, a hidden password, an unset option)
is a comment, so that feeding it back never sets a token to ``***``.
"""

from __future__ import annotations

import json
from typing import Any

from ..redact import redact_url
from .config import Setting, Settings

__all__ = ["print_config", "settings_line"]

_HEADER = (
    "# trio-ws-demo serve: the effective settings, each with where it came from\n"
    "# (flag > environment > file > default). Usable as a --config file."
)
_ALIGN = 34


def print_config(settings: Settings) -> str:
    """One TOML line per setting, its source in a comment."""
    lines = [_HEADER]
    for setting in settings:
        assignment, note = _assignment(setting)
        comment = f"# {setting.source}" + (f" ({note})" if note else "")
        lines.append(f"{assignment:<{_ALIGN}} {comment}")
    return "\n".join(lines)


def _assignment(setting: Setting) -> tuple[str, str]:
    """``key = value`` (commented out when it is not the real value) and a note."""
    option, value = setting.option, setting.value
    if value is None:
        return f"# {option.key} = none", ""
    if option.secret:
        return f"# {option.key} = ***", "secret: not shown"
    if option.repeatable:
        shown = [option.show_item(item) for item in value]
        hidden = shown != [str(item) for item in value]
        line = f"{option.key} = [{', '.join(json.dumps(item) for item in shown)}]"
    else:
        shown_one = option.show_item(value)
        hidden = option.type is str and shown_one != value
        line = f"{option.key} = {_toml(shown_one if option.type is str else value)}"
    return (f"# {line}", "password hidden") if hidden else (line, "")


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    return repr(value)  # ints, and floats as TOML spells them (inf included)


#: Shown in their own part of the Settings line, not among the changed limits.
_OWN_PART = {"history", "history_bytes"}


def settings_line(settings: Settings, auth: str) -> str:
    """``Settings: auth open; history off; redis none; limits: defaults``: the
    auth mode, history, Redis and every limit or timeout that is not its default,
    so a log shows at a glance what this process was started with."""
    history = settings["history"].value
    bytes_ = _amount(settings["history_bytes"], settings["history_bytes"].value)
    parts = [
        f"auth {auth}",
        f"history {history} messages / {bytes_}" if history else "history off",
        _redis(settings),
    ]
    changed = [
        f"{s.option.key} {_amount(s, s.value)} (default {_amount(s, s.option.default)})"
        for s in settings
        if s.option.group in ("limits", "timeouts")
        and s.option.dest not in _OWN_PART
        and not s.is_default
    ]
    parts.append("limits: " + (", ".join(changed) if changed else "defaults"))
    return "Settings: " + "; ".join(parts)


def _redis(settings: Settings) -> str:
    url = settings["redis"].value
    if not url:
        return "redis none"
    optional = " (optional)" if settings["redis_optional"].value else ""
    return f"redis {redact_url(url)}{optional}"


def _amount(setting: Setting, value: Any) -> str:
    """A value as the line shows it: bytes in KiB/MiB/GiB when exact, no ``.0``."""
    option = setting.option
    if value is None:
        return "none"
    if option.metavar == "BYTES" and isinstance(value, int):
        for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
            if value >= size and value % size == 0:
                return f"{value // size} {unit}"
        return f"{value} bytes"
    if isinstance(value, float) and value.is_integer():
        return f"{int(value)}{'s' if option.metavar == 'SECONDS' else ''}"
    if option.metavar == "SECONDS":
        return f"{value}s"
    return option.show(value)
