"""The signing-key options ``serve`` and ``token`` share, read like the token:
from the flag, else the environment, when the command runs (never in ``--help``)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..errors import TrioWsDemoError
from .flags import read_secret
from .schema import by_key

__all__ = [
    "JWT_KEY_ENV",
    "JWT_PUBLIC_KEY_ENV",
    "KeyError_",
    "add_key_flags",
    "jwt_public_key",
    "jwt_secret",
    "read_key_file",
    "warn_if_short",
]

JWT_KEY_ENV = by_key()["jwt-key"].env
JWT_PUBLIC_KEY_ENV = by_key()["jwt-public-key"].env
MIN_SECRET_BYTES = 32


class KeyError_(TrioWsDemoError):
    """A key option that cannot be used; ``str()`` is the one line to print."""


def add_key_flags(parser: argparse.ArgumentParser) -> None:
    """``token``'s key flags: ``--jwt-key`` as ``serve`` declares it (one help
    text for both commands), and the private key only ``token`` signs with."""
    jwt_key = by_key()["jwt-key"]
    parser.add_argument(
        jwt_key.flag, default=argparse.SUPPRESS, metavar=jwt_key.metavar, help=jwt_key.help
    )
    parser.add_argument(
        "--jwt-private-key",
        metavar="FILE",
        help="sign with this RSA or EC private key (PEM): RS256 or ES256",
    )


def jwt_secret(args: Any, *, strict: bool = False) -> str | None:
    """--jwt-key, else $TRIO_WS_DEMO_JWT_KEY. With *strict* (``serve``), one that
    is set but empty raises :class:`~.flags.EmptySecret`; else it counts as unset."""
    if strict:
        return read_secret(
            args,
            "jwt_key",
            "--jwt-key",
            JWT_KEY_ENV,
            f"the HS256 secret, {MIN_SECRET_BYTES} bytes or more (e.g. openssl rand -hex 32)",
        )
    return getattr(args, "jwt_key", None) or os.environ.get(JWT_KEY_ENV) or None


def warn_if_short(secret: str | None) -> None:
    """One line on stderr for an HS256 secret shorter than RFC 7518 §3.2 asks."""
    if secret is not None and len(secret.encode()) < MIN_SECRET_BYTES:
        print(
            f"warning: --jwt-key has {len(secret.encode())} bytes; use at least "
            f"{MIN_SECRET_BYTES} (e.g. openssl rand -hex 32)",
            file=sys.stderr,
        )


def read_key_file(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise KeyError_(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN" not in data:
        raise KeyError_(f"{what} {path} is not a PEM file")
    return data


def jwt_public_key(args: Any) -> bytes | None:
    """The PEM file --jwt-public-key (else $TRIO_WS_DEMO_JWT_PUBLIC_KEY) names; one
    that is set but empty raises :class:`~.flags.EmptySecret`."""
    path = read_secret(
        args,
        "jwt_public_key",
        "--jwt-public-key",
        JWT_PUBLIC_KEY_ENV,
        "the path of an RSA or EC public key (PEM)",
    )
    if path is None:
        return None
    data = read_key_file(path, "--jwt-public-key")
    try:
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise KeyError_(f"--jwt-public-key {path} is not an RSA or EC public key ({exc})") from None
    return data
