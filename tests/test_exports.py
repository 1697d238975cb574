"""Every exported name resolves, and each is exported by its own module only.

A package's ``__init__`` re-exports (that is its job: ``trio_ws_demo``,
``trio_ws_demo.server``, ``trio_ws_demo.client``, ``trio_ws_demo.backplane``);
any other module lists in ``__all__`` only what it defines, so that a reader
looking for a class finds one home for it.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import trio_ws_demo


def every_module() -> list[ModuleType]:
    names = [
        info.name
        for info in pkgutil.walk_packages(trio_ws_demo.__path__, "trio_ws_demo.")
        if not info.name.endswith("__main__")
    ]
    return [trio_ws_demo, *(importlib.import_module(name) for name in sorted(names))]


def unresolved(modules: list[ModuleType]) -> list[str]:
    return [
        f"{module.__name__}.{name}"
        for module in modules
        for name in getattr(module, "__all__", ())
        if not hasattr(module, name)
    ]


def exported_twice(modules: list[ModuleType]) -> list[str]:
    """Names a module (not a package) exports but does not define."""
    found = []
    for module in modules:
        if module.__name__ == "trio_ws_demo" or hasattr(module, "__path__"):
            continue  # a package: re-exporting is what it is for
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name, None)
            defined = inspect.isclass(value) or inspect.isfunction(value)
            if defined and value.__module__ != module.__name__:
                found.append(f"{module.__name__}.{name} is {value.__module__}.{name}")
    return found


def test_every_name_in_all_resolves() -> None:
    assert unresolved(every_module()) == []


def test_each_name_is_exported_by_its_home_only() -> None:
    assert exported_twice(every_module()) == []


def test_the_checks_can_fail() -> None:
    """One unresolvable name and one borrowed export are each reported."""
    broken = ModuleType("trio_ws_demo.broken")
    broken.__all__ = ["missing", "BroadcastServer"]  # type: ignore[attr-defined]
    broken.BroadcastServer = trio_ws_demo.BroadcastServer  # type: ignore[attr-defined]
    assert unresolved([broken]) == ["trio_ws_demo.broken.missing"]
    assert exported_twice([broken]) == [
        "trio_ws_demo.broken.BroadcastServer is trio_ws_demo.server.lifecycle.BroadcastServer"
    ]
