"""The exceptions the package raises for a caller to catch, in one tree.

Every one derives from :class:`TrioWsDemoError`, so ``except TrioWsDemoError``
catches what this package means to raise and nothing else; each ``str()`` is one
line meant for a person.
"""

from __future__ import annotations

__all__ = ["BackplaneUnavailable", "TrioWsDemoError"]


class TrioWsDemoError(Exception):
    """The base of every exception this package raises on purpose."""


class BackplaneUnavailable(TrioWsDemoError):
    """Redis could not be reached or used; ``str()`` is one line for a person."""
