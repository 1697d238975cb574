"""Where each ``serve`` setting comes from: a flag, else its environment
variable, else the ``--config`` TOML file, else its default.

Every value, whatever its source, goes through the same check as the flag (the
:class:`~.schema.Option`'s parser), so a limit means the same thing everywhere
and its mistake reads the same way. A mistake is one line naming where it is
(the file and key, or the variable) and exits 2; one close to a real name says
"did you mean". The file is checked whole, even the keys a flag overrides: it
is a document someone will deploy again. A variable is read only when no flag
overrides it, so an old value in a shell never stops a command that says better.
"""

from __future__ import annotations

import argparse
import difflib
import json
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import TrioWsDemoError
from .flags import TOKEN_HOSTS_ENV, EmptySecret
from .schema import ENV_PREFIX, OPTIONS, Option, by_key, given_on_command_line

__all__ = [
    "CONFIG_ENV",
    "ConfigError",
    "Setting",
    "Settings",
    "Source",
    "read_file",
    "resolve",
    "unknown_variables",
]

CONFIG_ENV = ENV_PREFIX + "CONFIG"
"""The file ``--config`` names when it is not given (a container's way)."""

OTHER_ENVS = frozenset({CONFIG_ENV, TOKEN_HOSTS_ENV})
"""``TRIO_WS_DEMO_*`` names that are read, but are not ``serve`` settings."""

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class ConfigError(TrioWsDemoError):
    """A setting that cannot be used; ``str()`` is the one line to print (exit 2)."""


@dataclass(frozen=True)
class Source:
    """Where one value came from: ``default``, ``file``, ``env`` or ``flag``, and
    which (the path, the variable, the flag)."""

    kind: str
    where: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.where}" if self.where else self.kind


DEFAULT = Source("default")


@dataclass(frozen=True)
class Setting:
    option: Option
    value: Any
    source: Source

    @property
    def is_default(self) -> bool:
        default = self.option.default
        return bool(self.value == (list(default) if self.option.repeatable else default))


class Settings:
    """The effective value of every option, and its source, in schema order."""

    def __init__(self, settings: list[Setting]) -> None:
        self._settings = {setting.option.dest: setting for setting in settings}

    def __iter__(self) -> Iterator[Setting]:
        return iter(self._settings.values())

    def __getitem__(self, dest: str) -> Setting:
        return self._settings[dest]

    def apply(self, args: argparse.Namespace) -> None:
        """Put every effective value where the command's code reads it."""
        for setting in self:
            setattr(args, setting.option.dest, setting.value)


def resolve(args: argparse.Namespace, environ: Mapping[str, str], path: str | None) -> Settings:
    """Every option's value and source, from *args* (what was typed), *environ*
    and the TOML file at *path*. Raises :class:`ConfigError` or
    :class:`~.flags.EmptySecret` (both: one line, exit 2)."""
    in_file = read_file(path) if path else {}
    typed = given_on_command_line(args)
    settings = []
    for option in OPTIONS:
        setting = _from_flag(option, args, typed)
        setting = setting or _from_env(option, environ)
        if setting is None and option.key in in_file:
            setting = Setting(option, in_file[option.key], Source("file", str(path)))
        setting = setting or Setting(option, _default(option), DEFAULT)
        _refuse_empty(setting)
        settings.append(setting)
    return Settings(settings)


def read_file(path: str) -> dict[str, Any]:
    """The TOML file's settings under their keys, each checked and converted."""
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read --config {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    options = by_key()
    values = {}
    for key, raw in document.items():
        option = options.get(key)
        if option is None:
            raise ConfigError(f"{path}: unknown key {key!r}{_did_you_mean_key(key)}")
        values[key] = _from_toml(option, raw, f"{path}: {key}")
    return values


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One warning line per ``TRIO_WS_DEMO_*`` variable that nothing reads (a
    typo, or a setting from another version). A warning, not an error: the
    same environment serves the client, which reads names of its own."""
    known = {option.env for option in OPTIONS}
    lines = []
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in known and name not in OTHER_ENVS:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean ${close[0]}?)" if close else ""
            lines.append(f"warning: ${name} is not a serve setting: ignored{hint}")
    return lines


def _from_flag(option: Option, args: argparse.Namespace, typed: frozenset[str]) -> Setting | None:
    if option.dest not in typed:
        return None
    return Setting(option, getattr(args, option.dest), Source("flag", option.flag))


def _from_env(option: Option, environ: Mapping[str, str]) -> Setting | None:
    text = environ.get(option.env)
    if text is None or (not text.strip() and option.nonempty is None):
        return None  # unset, or set but empty: what a unit file's unset variable gives
    where = f"${option.env}"
    try:
        if option.type is bool:
            value: Any = _boolean(text)
        elif option.repeatable:
            value = [option.convert(item.strip()) for item in text.split(",") if item.strip()]
        elif not text.strip():
            value = text  # an empty secret: refused below, by name
        else:
            value = option.convert(text)
    except argparse.ArgumentTypeError as exc:
        raise ConfigError(f"{where}: {exc}{_did_you_mean_choice(option, text)}") from None
    return Setting(option, value, Source("env", option.env))


def _from_toml(option: Option, raw: Any, where: str) -> Any:
    """*raw*, a TOML value, as *option*'s value: its native type, then its check."""
    try:
        if option.type is bool:
            if not isinstance(raw, bool):
                raise _wrong_type("true or false", raw)
            return raw
        if option.repeatable:
            items = [raw] if isinstance(raw, str) else raw
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise _wrong_type("an array of strings", raw)
            return [option.convert(item) for item in items]
        if option.type is int and not (isinstance(raw, int) and not isinstance(raw, bool)):
            raise _wrong_type("an integer", raw)
        if option.type is float and (isinstance(raw, bool) or not isinstance(raw, int | float)):
            raise _wrong_type("a number", raw)
        if option.type is str and not isinstance(raw, str):
            raise _wrong_type("a string", raw)
        return option.convert(str(raw))
    except argparse.ArgumentTypeError as exc:
        raise ConfigError(f"{where}: {exc}{_did_you_mean_choice(option, raw)}") from None


def _wrong_type(expected: str, raw: Any) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(f"must be {expected}, not {_toml_kind(raw)}")


def _toml_kind(raw: Any) -> str:
    if isinstance(raw, bool):
        return f"the boolean {str(raw).lower()}"
    if isinstance(raw, str):
        return f"the string {json.dumps(raw)}"
    if isinstance(raw, int | float):
        return f"the number {raw}"
    if isinstance(raw, list):
        return "an array"
    if isinstance(raw, dict):
        return "a table"
    return f"a {type(raw).__name__}"  # dates and times


def _boolean(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"must be 1, true, yes, on or 0, false, no, off, not {text!r}")


def _default(option: Option) -> Any:
    return list(option.default) if option.repeatable else option.default


def _refuse_empty(setting: Setting) -> None:
    """A secret set to nothing would let anyone in: say where, and what to do."""
    what, value, source = setting.option.nonempty, setting.value, setting.source
    if what is None or value is None or value.strip():
        return
    if source.kind == "flag":
        raise EmptySecret(
            f"{source.where} is empty, which would let anyone in; pass {what}, or leave it out"
        )
    if source.kind == "env":
        raise EmptySecret(
            f"${source.where} is set but empty, which would let anyone in; "
            f"set it to {what}, or unset it"
        )
    raise EmptySecret(
        f"{source.where}: {setting.option.key} is empty, which would let anyone in; "
        f"set it to {what}, or remove it"
    )


def _did_you_mean_key(key: str) -> str:
    keys = list(by_key())
    dashed = key.replace("_", "-")
    if dashed in keys:
        return f" (did you mean {dashed}? keys are spelled like the flags)"
    close = difflib.get_close_matches(dashed, keys, n=1)
    if close:
        return f" (did you mean {close[0]}?)"
    return "; the keys are serve's flags without their dashes (trio-ws-demo serve --help)"


def _did_you_mean_choice(option: Option, raw: Any) -> str:
    if option.choices is None or not isinstance(raw, str):
        return ""
    close = difflib.get_close_matches(raw, option.choices, n=1)
    return f" (did you mean {close[0]}?)" if close else ""
