"""What may reach a log or a terminal: two escaping policies and two redactions.

Anything a peer or a user controls is escaped before a person reads it, so that
it cannot end a log line, forge one, or drive a terminal (findings S9, T10), and
secrets are hidden wherever a request target or a Redis URL is shown (S10):

* :func:`escape`: for log lines (C0, DEL, C1, U+2028/9, bidi controls, all as
  ``\\xNN`` / ``\\uNNNN``);
* :func:`escape_for_terminal`: for what the echo client prints (the same set, with
  ``\\n``, ``\\r`` and ``\\t`` by name). Two functions because they are two
  policies: a log line reader and a terminal reader want different spellings;
* :func:`redact`: a request target with any token value hidden, then escaped;
* :func:`redact_url`: a URL with its password hidden.

Pure functions of strings: no I/O.
"""

from __future__ import annotations

import re
import urllib.parse

__all__ = ["BIDI_CONTROLS", "escape", "escape_for_terminal", "redact", "redact_url"]

# Where a token may hide in a target: after ?, ; or #, any case, with the
# name or "=" percent-encoded (finding S10). Its value runs to the next & ; or #.
_TOKEN_VALUE = re.compile(r"(?i)(token\s*=)[^&;#]*")
_MAY_HOLD_TOKEN = re.compile(r"(?i)t(?:%6f|o)(?:%6b|k)")
# C0, DEL, C1, and the Unicode line and paragraph separators: anything a log
# reader might take as the end of a line or a terminal command (finding S9).
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
_CONTROLS.update({0x2028: "\\u2028", 0x2029: "\\u2029"})
# Bidi marks, embeddings, overrides and isolates: they reorder what follows.
BIDI_CONTROLS = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
_CONTROLS.update({c: f"\\u{c:04x}" for c in BIDI_CONTROLS})

# The terminal's set: C0 and C1 control characters and DEL, shown as escapes so
# that a remote peer cannot move the cursor, change colours or retitle the
# terminal; newline, return and tab by name.
_TERMINAL = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]}
_TERMINAL.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
# Line and paragraph separators, and bidi controls, which reorder what follows
# ("alice\u202egnp.exe" reads "alicexe.png"): shown as \u escapes too.
_TERMINAL.update({c: f"\\u{c:04x}" for c in (0x2028, 0x2029, *BIDI_CONTROLS)})


def escape(text: str) -> str:
    """*text* for a log line: control characters and line separators written as escapes."""
    return text.translate(_CONTROLS)


def escape_for_terminal(text: str) -> str:
    """*text* safe to print: control characters (``\\n``, ``\\r``, ``\\t`` by name),
    line separators and bidi controls written as escapes. Ordinary text, non-ASCII
    letters and emoji included, is left as it is."""
    return text.translate(_TERMINAL)


def redact(target: str) -> str:
    """*target* for a log line: any token value hidden, control characters escaped."""
    cut = re.search(r"[?;#]", target)
    if cut is None:
        return escape(target)
    path, rest = target[: cut.start()], target[cut.start() :]
    if _MAY_HOLD_TOKEN.search(rest) or "%" in rest:
        decoded = rest
        for _ in range(3):  # %2574oken: decode until nothing changes
            decoded, before = urllib.parse.unquote(decoded, errors="replace"), decoded
            if decoded == before:
                break
        if re.search(r"(?i)token", decoded):
            rest = _TOKEN_VALUE.sub(r"\1***", decoded)
            if re.search(r"(?i)token(?!\s*=\*\*\*)", rest):
                rest = rest[:1] + "***"  # a token name we cannot pair with a value
    return escape(path + rest)


def redact_url(url: str) -> str:
    """*url* with its password (if any) shown as ``***``: fit for logs and errors.

    Done on the text, not through :func:`urllib.parse.urlsplit`'s host and port,
    so that a URL naming several hosts (``redis+sentinel://:pw@h1:1,h2:2/svc``) or
    one that does not parse is hidden as well, and the rest is shown as given."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = min((i for i in (rest.find(c) for c in "?#") if i >= 0), default=len(rest))
    # The last "@" before the query: a password with an unescaped "/" or "@" is
    # hidden whole (hiding too much beats showing a part of a secret).
    userinfo, at, hosts = rest[:end].rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}://{user}:***@{hosts}{rest[end:]}"
