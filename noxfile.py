"""Developer tasks. A bare ``nox`` runs tests, lint and typecheck."""

from __future__ import annotations

import shutil

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

LINTED = ["trio_ws_demo", "tests", "benchmarks", "noxfile.py"]


@nox.session
def tests(session: nox.Session) -> None:
    """Unit, loopback, CLI and Node-peer tests."""
    session.install("-e", ".[test]")
    if shutil.which("npm"):
        # The article's own Node client.js is one of our test peers.
        session.run("npm", "ci", "--prefix", "tests/node", "--no-audit", "--no-fund", external=True)
        # The load generator, for the benchmark's smoke test.
        session.run("npm", "ci", "--prefix", "benchmarks", "--no-audit", "--no-fund", external=True)
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.8")
    session.run("ruff", "check", *LINTED)
    session.run("ruff", "format", "--check", *LINTED)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("mypy>=1.13", "-e", ".")
    session.run("mypy", "--strict", "trio_ws_demo")


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
    """Fan-out benchmark against baselines (`-- --quick` for a smoke run)."""
    session.install("-e", ".", "websockets>=14")
    session.run("npm", "ci", "--prefix", "benchmarks", "--no-audit", "--no-fund", external=True)
    session.run("python", "benchmarks/bench.py", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Regenerate the settings table of docs/configuration.md from the option schema."""
    session.install("-e", ".")
    session.run("python", "-m", "trio_ws_demo.cli.reference", "--write", "docs/configuration.md")
