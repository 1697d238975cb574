"""Which failures mean the link to Redis is lost, and how one is told.

The link's tasks run under :func:`lost_on_error`: whatever Redis or the network
raised becomes one :class:`LinkLost`, on which the link goes down and is tried
again; anything else is a bug, and goes up as it is. Kept apart so that this
one judgement (a command error such as OOM is *not* a lost link, see
``RedisBackplane._refused``) has one place.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import trio

# Its exception is for the backplane only (never reaches a caller of the
# library), so it is not exported: see tests/test_errors.py.
__all__ = ["describe", "is_link_error", "leaves", "lost_on_error"]


class LinkLost(Exception):
    """The link to Redis failed; ``str()`` says how."""


def is_link_error(exc: BaseException) -> bool:
    """Whether *exc* is Redis's or the network's (not a bug here)."""
    from coredis.exceptions import RedisError

    return isinstance(exc, (RedisError, OSError, TimeoutError, trio.TooSlowError))


@contextlib.asynccontextmanager
async def lost_on_error() -> AsyncIterator[None]:
    """Turn whatever Redis or the network raised (also inside task groups) into
    one :class:`LinkLost`; anything else is a bug and goes up as it is."""
    try:
        yield
    except BaseException as exc:
        # coredis's own tasks may end Cancelled beside the error that ended the
        # link (trio's cancellation is level-triggered: a real one goes on).
        found = [leaf for leaf in leaves(exc) if not isinstance(leaf, trio.Cancelled)]
        if found and all(is_link_error(leaf) for leaf in found):
            raise LinkLost(describe(found[0])) from exc
        raise


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions in *exc*, groups opened."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def describe(exc: BaseException) -> str:
    """*exc* as a log line says it."""
    if isinstance(exc, trio.TooSlowError):
        return "no answer in time"
    text = str(exc) or type(exc).__name__
    if text[1:2].islower():  # "Connection refused", not "DENIED ..." or "OOM ..."
        return text[0].lower() + text[1:]
    return text
