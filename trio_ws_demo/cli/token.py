"""``trio-ws-demo token``: mint a signed token (JWT) for development and tests."""

from __future__ import annotations

import argparse
import re
import sys
import time
import unicodedata
from typing import Any

from ..tokens import RIGHTS, mint
from .flags import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, HelpFormatter
from .jwtkeys import KeyError_, add_key_flags, jwt_secret, read_key_file, warn_if_short

__all__ = ["add_parser", "duration", "run"]

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h`` or ``2d``, in seconds."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if found is None or float(found[1]) <= 0:
        raise argparse.ArgumentTypeError(
            f"must be a duration like 90s, 15m, 1h or 2d, not {text!r}"
        )
    return float(found[1]) * _UNITS[found[2]]


def room_right(text: str) -> tuple[str, str]:
    pattern, sep, rights = text.rpartition("=")
    if not sep or rights not in RIGHTS:
        raise argparse.ArgumentTypeError(
            f"expected PATTERN=RIGHTS with RIGHTS r, w or rw (e.g. 'chat/*=rw'), not {text!r}"
        )
    # Room names as the server reads them: NFC, and /ops/ is the room ops.
    pattern = unicodedata.normalize("NFC", pattern.lstrip("/"))
    if len(pattern) > 1 and pattern.endswith("/"):
        pattern = pattern[:-1]
    return pattern, rights


def add_parser(commands: Any) -> argparse.ArgumentParser:
    token: argparse.ArgumentParser = commands.add_parser(
        "token",
        help="mint a signed token (JWT) for development and tests",
        description="Print a signed token that serve --jwt-key (or --jwt-public-key) accepts. "
        "Room patterns: '*' is one path segment, a last '**' is one or more, '**' alone "
        "is every room; the rights of every matching pattern add up.",
        formatter_class=HelpFormatter,
    )
    token.add_argument("--sub", metavar="NAME", help="the client's name (shown in presence)")
    token.add_argument(
        "--room",
        type=room_right,
        action="append",
        default=[],
        metavar="PATTERN=RIGHTS",
        help="rights in the rooms PATTERN matches: r, w or rw (repeatable), e.g. 'chat/*=rw'",
    )
    token.add_argument(
        "--publish", action="store_true", help="may also publish over HTTP (POST /ROOM)"
    )
    token.add_argument(
        "--ttl",
        type=duration,
        default="1h",
        metavar="DURATION",
        help="how long it is valid: 90s, 15m, 1h, 2d",
    )
    add_key_flags(token)
    return token


def run(args: argparse.Namespace) -> int:
    secret = jwt_secret(args)
    private_key = None
    if args.jwt_private_key:
        try:
            private_key = read_key_file(args.jwt_private_key, "--jwt-private-key")
        except KeyError_ as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILURE
    if (secret is None) == (private_key is None):
        print(
            "error: pass one of --jwt-key SECRET (or $TRIO_WS_DEMO_JWT_KEY) or "
            "--jwt-private-key FILE",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if not args.room:
        print(
            "error: a token without --room can read and write nothing; add one, "
            "e.g. --room 'chat/*=rw' (or --room '**=r' for every room)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    warn_if_short(secret)
    try:
        signed = mint(
            secret=secret,
            private_key=private_key,
            sub=args.sub,
            rooms=dict(args.room),
            publish=args.publish,
            expires=time.time() + args.ttl,
        )
    except (ValueError, TypeError) as exc:
        print(f"error: --jwt-private-key {args.jwt_private_key}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(signed)
    return EXIT_OK
