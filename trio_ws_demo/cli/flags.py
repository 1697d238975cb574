"""What every command shares: exit codes, flag value parsers, the help formatter and
the token, which is read from the environment only when a command runs (so that
``--help`` never shows it)."""

from __future__ import annotations

import argparse
import difflib
import os
import re
from collections.abc import Callable, Sequence
from typing import NoReturn

from ..errors import TrioWsDemoError
from ..forwarded import parse_network

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "TOKEN_ENV",
    "TOKEN_HOSTS_ENV",
    "CommandParser",
    "EmptySecret",
    "HelpFormatter",
    "OneLineParser",
    "head_size",
    "header",
    "non_negative_float",
    "non_negative_float_rate",
    "non_negative_int",
    "port",
    "positive_float",
    "positive_int",
    "read_secret",
    "read_server_token",
    "read_token",
    "trusted_proxy",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

TOKEN_ENV = "TRIO_WS_DEMO_TOKEN"
TOKEN_HOSTS_ENV = "TRIO_WS_DEMO_TOKEN_HOSTS"
"""Where ``echo`` may send the token from the environment (default: this machine)."""


def number(
    text: str, kind: type[int] | type[float], ok: Callable[[float], bool], what: str
) -> float:
    """Parse a flag's value; a clear message (never a function name) when it is wrong."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, not {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {what}, not {text!r}")
    return value


def positive_float(text: str) -> float:
    return number(text, float, lambda v: v > 0, "a positive number of seconds")


def non_negative_float(text: str) -> float:
    return number(text, float, lambda v: v >= 0, "zero or more seconds")


def non_negative_float_rate(text: str) -> float:
    return number(text, float, lambda v: v >= 0, "zero or more per second")


def positive_int(text: str) -> int:
    return int(number(text, int, lambda v: v >= 1, "a whole number of at least 1"))


def non_negative_int(text: str) -> int:
    return int(number(text, int, lambda v: v >= 0, "a whole number, zero or more"))


def head_size(text: str) -> int:
    return int(number(text, int, lambda v: v >= 256, "a whole number of bytes, at least 256"))


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number, not {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, not {text}")
    return value


def trusted_proxy(text: str) -> str:
    """One ``--trusted-proxy``, checked and written as a network (a usage error
    says what to write: ``10.0.0.1/8``, did you mean 10.0.0.0/8?)."""
    try:
        return str(parse_network(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME:VALUE, not {text!r}")
    return name.strip(), value.strip()


class OneLineParser(argparse.ArgumentParser):
    """A usage error is one line, the error and where to read more: argparse's
    usage first (24 lines for serve) buried it."""

    def error(self, message: str) -> NoReturn:
        choice = re.search(r"invalid choice: '?([^' ]*)'? \(choose from (.*)\)", message)
        if choice:  # trio-ws-demo server: did you mean serve?
            names = re.findall(r"[\w-]+", choice[2])
            close = difflib.get_close_matches(choice[1], names, n=1)
            if close:
                message += f" (did you mean {close[0]}?)"
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see {self.prog} --help\n")


class CommandParser(OneLineParser):
    """A command's parser that takes positionals after options, as people type them
    (``echo URL --binary hi``); plain argparse stops at the first option."""

    _intermixing = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._intermixing:  # the intermixed parse calls back here twice
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            parsed, extras = self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False
        if extras:  # said here, with this command's usage, not the top level's
            self.error(f"unrecognized arguments: {' '.join(extras)}{self._did_you_mean(extras)}")
        return parsed, extras

    def _did_you_mean(self, extras: list[str]) -> str:
        """ "(did you mean --history?)" for a mistyped option, if one is close."""
        options = [o for o in self._option_string_actions if o.startswith("--")]
        for extra in extras:
            if extra.isdigit() and "--port" in options:  # serve 8080
                return f" (did you mean --port {extra}?)"
            if extra.startswith("--"):
                close = difflib.get_close_matches(extra.split("=", 1)[0], options, n=1)
                if close:
                    return f" (did you mean {close[0]}?)"
        return ""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show a default only when there is one to show (not None, [] or off)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, [], False, argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


def read_token(args: argparse.Namespace) -> str | None:
    """--token, else $TRIO_WS_DEMO_TOKEN (read here, so that --help never shows it)."""
    return getattr(args, "token", None) or os.environ.get(TOKEN_ENV) or None


class EmptySecret(TrioWsDemoError):
    """A secret flag or variable that is set but empty; ``str()`` is the one line
    to print (exit 2). Empty would otherwise mean "no authentication"."""


def read_secret(args: argparse.Namespace, attr: str, flag: str, env: str, what: str) -> str | None:
    """*flag*, else ``$env``; None when neither is set. A value that is set but
    empty (or only blanks: ``--jwt-key "$UNSET"`` gives one) raises EmptySecret,
    which says to pass *what* or leave it out."""
    value = getattr(args, attr, None)
    if value is not None:
        if not value.strip():
            raise EmptySecret(
                f"{flag} is empty, which would let anyone in; pass {what}, or leave it out"
            )
        return str(value)
    value = os.environ.get(env)
    if value is not None and not value.strip():
        raise EmptySecret(
            f"${env} is set but empty, which would let anyone in; set it to {what}, or unset it"
        )
    return value


def read_server_token(args: argparse.Namespace) -> str | None:
    """``serve``'s --token, else $TRIO_WS_DEMO_TOKEN; an empty one raises EmptySecret."""
    return read_secret(
        args,
        "token",
        "--token",
        TOKEN_ENV,
        "the token clients must present (e.g. openssl rand -hex 32)",
    )
