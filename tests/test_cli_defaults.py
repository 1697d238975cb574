"""``serve``'s defaults are ServerOptions' own: no literal copy to drift."""

from __future__ import annotations

from trio_ws_demo import ServerOptions
from trio_ws_demo.cli import build_parser


def test_serve_flags_default_to_the_server_options_fields() -> None:
    args = build_parser().parse_args(["serve"])
    for field in (
        "max_batch",
        "max_message_rate",
        "message_burst",
        "rate_limit_action",
        "max_memory",
        "max_clients",
        "max_message_size",
    ):
        assert getattr(args, field) == getattr(ServerOptions, field), field
