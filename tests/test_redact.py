"""redact.py: what may reach a log or a terminal, as pure functions of strings."""

from __future__ import annotations

from trio_ws_demo.redact import escape, escape_for_terminal, redact, redact_url


def test_the_log_and_terminal_policies_differ_only_in_spelling() -> None:
    hostile = "a\nb\r\t\x1b[2J\x9b\u2028\u202egnp"
    assert escape(hostile) == "a\\x0ab\\x0d\\x09\\x1b[2J\\x9b\\u2028\\u202egnp"
    assert escape_for_terminal(hostile) == "a\\nb\\r\\t\\x1b[2J\\x9b\\u2028\\u202egnp"
    assert escape("héllo 👋") == escape_for_terminal("héllo 👋") == "héllo 👋"


def test_redact_hides_tokens_and_redact_url_hides_passwords() -> None:
    assert redact("/room?token=s3cret&name=x") == "/room?token=***&name=x"
    assert redact("/room?%74oken=s3cret") == "/room?token=***"
    assert redact("/plain\n") == "/plain\\x0a"
    assert redact_url("redis://u:pw@host:6380/0") == "redis://u:***@host:6380/0"
    assert redact_url("redis://host") == "redis://host"
