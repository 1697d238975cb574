"""Developer tasks. A bare ``nox`` runs the tests on the oldest and the newest
Python we claim, then lint and typecheck; ``nox -s tests`` runs every Python."""

from __future__ import annotations

import shutil
from pathlib import Path

import nox

#: requires-python (pyproject.toml) says >=3.11: every minor version from there.
PYTHONS = ["3.11", "3.12", "3.13"]

nox.options.default_venv_backend = "uv|virtualenv"
# The ends of the range catch nearly everything a middle version would, in half the time.
nox.options.sessions = [f"tests-{PYTHONS[0]}", f"tests-{PYTHONS[-1]}", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

LINTED = ["trio_ws_demo", "tests", "benchmarks", "noxfile.py"]


def npm_ci(session: nox.Session, prefix: str) -> None:
    """``npm ci`` in *prefix*, unless its node_modules is newer than its lock file:
    the Python versions' sessions share one node_modules, installed once."""
    installed = Path(prefix, "node_modules", ".package-lock.json")
    lock = Path(prefix, "package-lock.json")
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    session.run("npm", "ci", "--prefix", prefix, "--no-audit", "--no-fund", external=True)


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Unit, loopback, CLI and Node-peer tests, on two xdist workers.

    Most of a test's time is spent waiting on a peer (a process starting, a
    timeout running out), not on a CPU, so two workers nearly halve the wall
    time; ``-- -n 0`` runs them in one process.
    """
    session.install("-e", ".[test]")
    if shutil.which("npm"):
        npm_ci(session, "tests/node")  # the article's own Node client.js is a test peer
        npm_ci(session, "benchmarks")  # the load generator, for the benchmark's smoke test
    session.run("pytest", "-n", "2", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.8")
    session.run("ruff", "check", *LINTED)
    session.run("ruff", "format", "--check", *LINTED)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package, as the oldest Python we claim reads it."""
    session.install("mypy>=1.13", "-e", ".")
    session.run("mypy", "--strict", "--python-version", PYTHONS[0], "trio_ws_demo")


@nox.session
def soak(session: nox.Session) -> None:
    """20,000 connect-echo-disconnect cycles, 200 at a time; fds and RSS must come back."""
    session.install("-e", ".")
    session.run("python", "benchmarks/soak.py", *session.posargs)


@nox.session
def chaos(session: nox.Session) -> None:
    """Every fault campaign of tests/chaos.py, longer (`-- --seconds N`), with the
    figures table; as root also a partition on network namespaces."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "tests.chaos", *session.posargs)
    session.run("python", "-m", "tests.partition_run", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Fan-out benchmark against baselines (`-- --quick` for a smoke run; `-- --compression`
    for the permessage-deflate rows, benchmarks/compression.py)."""
    session.install("-e", ".", "websockets>=14")
    session.run("npm", "ci", "--prefix", "benchmarks", "--no-audit", "--no-fund", external=True)
    session.run("python", "benchmarks/bench.py", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Regenerate the settings table of docs/configuration.md from the option schema."""
    session.install("-e", ".")
    session.run("python", "-m", "trio_ws_demo.cli.reference", "--write", "docs/configuration.md")
