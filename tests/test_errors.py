"""Every public exception derives from the one base, TrioWsDemoError (errors.py)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import trio_ws_demo
from trio_ws_demo import errors

#: Public exceptions outside the tree, each with why. RoomNameError is a
#: ValueError the front door, the publish API and the web routes turn into a
#: 400 themselves; it never reaches a caller of the library.
OUTSIDE = {"trio_ws_demo.rooms.RoomNameError"}


def public_exceptions() -> dict[str, type[BaseException]]:
    """Every exception class named in some module's ``__all__``, by its home."""
    found = {}
    names = [
        info.name
        for info in pkgutil.walk_packages(trio_ws_demo.__path__, "trio_ws_demo.")
        if not info.name.endswith("__main__")
    ]
    for module in [trio_ws_demo, *(importlib.import_module(name) for name in sorted(names))]:
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name)
            if inspect.isclass(value) and issubclass(value, BaseException):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return found


def test_every_public_exception_derives_from_the_one_base() -> None:
    found = public_exceptions()
    assert set(found) >= {
        "trio_ws_demo.errors.BackplaneUnavailable",
        "trio_ws_demo.errors.ClientError",
        "trio_ws_demo.errors.ServerStartupError",
        "trio_ws_demo.errors.TokenError",
    }
    outside = {
        name for name, cls in found.items() if not issubclass(cls, trio_ws_demo.TrioWsDemoError)
    }
    assert outside == OUTSIDE


def test_errors_defines_every_exception_it_exports_and_the_top_level_has_them() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert cls.__module__ == "trio_ws_demo.errors"
        assert getattr(trio_ws_demo, name) is cls
