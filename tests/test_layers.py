"""The package's layers, as a rule that fails a test instead of prose that drifts.

The top level is the sans-I/O core; each folder is one side that does I/O::

    cli/        may import anything (the face: it prints, configures logging, calls trio.run)
    server/     the top level, itself; backplane/ only in server/lifecycle.py (where the
                server is built)
    backplane/  the top level, itself
    client/     the top level, itself
    top level   the top level only (its __init__ re-exports the public API of server/
                and client/, __main__ runs cli/), and none of socket, ssl, h11, coredis,
                trio_websocket

Each third-party library has one home: wsproto in protocol.py, PyJWT in tokens.py,
h11 in server/publish.py, coredis in backplane/, trio-websocket in client/; and
prometheus-client has none (``/metrics`` is written by exposition.py: the library
cost every server process 3 MiB of imports). Every import counts, those under ``TYPE_CHECKING`` and
inside functions too: a layer is what a reader has to know about.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "trio_ws_demo"

SIDES = {"cli", "server", "backplane", "client"}
#: What each side may import from the package ("" is the top level).
ALLOWED = {
    "cli": {"", "cli", "server", "client", "backplane"},
    "server": {"", "server"},
    "backplane": {"", "backplane"},
    "client": {"", "client"},
    "": {""},
}
#: The one place each exception to ALLOWED lives.
EXCEPTIONS = {
    ("server/lifecycle.py", "backplane"),
    ("__init__.py", "server"),
    ("__init__.py", "client"),
    ("__main__.py", "cli"),
}
#: Third-party libraries and the one place (a file or a folder) that may import each.
HOMES = {
    "wsproto": "protocol.py",
    "jwt": "tokens.py",
    "h11": "server/publish.py",
    "coredis": "backplane/",
    "trio_websocket": "client/",
}
#: Libraries the package does without (the tests may use them, to check our output).
NOWHERE = {"prometheus_client"}
#: Standard modules that mean I/O: never in the sans-I/O core.
NOT_AT_THE_TOP = {"socket", "ssl"}


def side_of(relative: str) -> str:
    """The folder *relative* (a path inside the package) belongs to; "" for the top."""
    head = relative.split("/", 1)[0]
    return head if head in SIDES and "/" in relative else ""


def imports_of(relative: str, source: str) -> list[tuple[bool, str, int]]:
    """(inside the package?, what, line) for every import in *source*: package
    imports as a path in the package ("server/outbox"), others by their top name."""
    package = relative.split("/")[:-1]
    found = []
    for node in ast.walk(ast.parse(source, relative)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "trio_ws_demo":
                    found.append((True, "/".join(parts[1:]), node.lineno))
                else:
                    found.append((False, parts[0], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            parts = (node.module or "").split(".")
            if node.level == 0:
                if parts[0] == "trio_ws_demo":
                    found.append((True, "/".join(parts[1:]), node.lineno))
                else:
                    found.append((False, parts[0], node.lineno))
                continue
            base = package[: len(package) - (node.level - 1)]
            names = parts if node.module else [node.names[0].name]
            found.append((True, "/".join(base + names), node.lineno))
    return found


def violations(sources: dict[str, str]) -> list[str]:
    """Every import in *sources* (path in the package -> text) the rule forbids."""
    problems = []
    for relative, source in sorted(sources.items()):
        side = side_of(relative)
        for inside, target, line in imports_of(relative, source):
            where = f"{relative}:{line}"
            if inside:
                head = target.split("/", 1)[0]
                wanted = head if head in SIDES else ""
                if wanted not in ALLOWED[side] and (relative, wanted) not in EXCEPTIONS:
                    problems.append(f"{where} imports {target}: {side or 'the top level'} may not")
            elif target in HOMES:
                home = HOMES[target]
                if not (relative == home or (home.endswith("/") and relative.startswith(home))):
                    problems.append(f"{where} imports {target}, whose one home is {home}")
            elif target in NOWHERE:
                problems.append(f"{where} imports {target}, which the package does without")
            elif target in NOT_AT_THE_TOP and side == "":
                problems.append(f"{where} imports {target}: the top level does no I/O")
    return problems


def package_sources() -> dict[str, str]:
    return {
        path.relative_to(PACKAGE).as_posix(): path.read_text() for path in PACKAGE.rglob("*.py")
    }


def test_every_import_follows_the_layers() -> None:
    assert violations(package_sources()) == []


def test_the_rule_fails_on_one_forbidden_import() -> None:
    """The walk can fail: one import of each kind the rule forbids is reported."""
    sources = package_sources()
    forbidden = {
        "hub.py": "from .server import outbox\n",  # the core on a side
        "server/outbox.py": "from ..backplane import link\n",  # backplane outside lifecycle
        "client/session.py": "from ..server.listen import format_host\n",
        "rooms.py": "import socket\n",  # I/O in the core
        "server/connection.py": "import h11\n",  # h11 outside its home
        "server/web.py": "import prometheus_client\n",  # not a dependency
    }
    for relative, line in forbidden.items():
        changed = dict(sources, **{relative: sources[relative] + line})
        found = violations(changed)
        assert len(found) == 1 and found[0].startswith(relative + ":"), (relative, found)


def test_test_modules_never_import_one_another() -> None:
    """Shared helpers live in helper modules (wsraw, processes, rigs, terminal,
    backplane_rigs, conftest): a test module is only ever run, never imported."""
    tests = Path(__file__).resolve().parent
    offenders = []
    for path in sorted(tests.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("test_"):
                offenders.append(f"{path.name}:{node.lineno} imports {node.module}")
    assert offenders == []
