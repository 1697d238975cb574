"""The exceptions the package raises for a caller to catch, in one tree.

Every one derives from :class:`TrioWsDemoError`, so ``except TrioWsDemoError``
catches what this package means to raise and nothing else; each ``str()`` is one
line meant for a person::

    TrioWsDemoError
    ├── ServerStartupError    the server could not start listening (server/listen.py)
    ├── ClientError           the echo client could not do its job (client/session.py)
    ├── TokenError            a credential is not acceptable: the 401's reason (tokens.py)
    └── BackplaneUnavailable  Redis could not be reached or used (backplane/, publish)

``tests/test_errors.py`` holds every public exception of the package to this base.
"""

from __future__ import annotations

__all__ = [
    "BackplaneUnavailable",
    "ClientError",
    "ServerStartupError",
    "TokenError",
    "TrioWsDemoError",
]


class TrioWsDemoError(Exception):
    """The base of every exception this package raises on purpose."""


class BackplaneUnavailable(TrioWsDemoError):
    """Redis could not be reached or used; ``str()`` is one line for a person."""


class ServerStartupError(TrioWsDemoError):
    """The server could not start listening; the message says what to do."""


class ClientError(TrioWsDemoError):
    """The client could not do its job; ``str()`` is one line for a person."""


class TokenError(TrioWsDemoError):
    """The credential is not acceptable; ``str()`` says why, for the 401."""
