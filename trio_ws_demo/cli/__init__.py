"""Command line: ``trio-ws-demo serve``, ``echo`` and ``token``.

This package is the only code that prints, configures logging or calls
:func:`trio.run`; everything it does is also available as a library call. Each
command's flags sit beside the code that uses them (:mod:`.serve`, :mod:`.echo`).
Exit codes: 0 success, 1 failure (one line on stderr says why), 2 usage error,
130 interrupted.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .. import __version__
from . import echo, serve, token
from .flags import EXIT_USAGE, CommandParser, OneLineParser
from .output import escape

__all__ = ["build_parser", "escape", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="trio-ws-demo",
        description="A Trio WebSocket broadcast server and echo test client.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=CommandParser
    )
    serve.add_parser(commands)
    echo.add_parser(commands)
    token.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command == "serve":
        return serve.run(args)
    if args.command == "token":
        return token.run(args)
    return echo.run(args)
