"""One option schema (issue 29, item 1): every ``serve`` setting from a flag, its
``$TRIO_WS_DEMO_*`` variable or a ``--config`` TOML file, in that order, with
``--print-config``, ``--check-config`` and the ``Settings:`` line.

The precedence matrix runs in-process through ``main()`` and ``--print-config``'s
source column (fast, exact); real ``python -m trio_ws_demo serve`` processes
prove that a file's and a variable's values reach the running server, and that
the docs table is the schema's.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import trio
import trustme

from trio_ws_demo.cli import main
from trio_ws_demo.cli.effective import settings_line
from trio_ws_demo.cli.flags import TOKEN_ENV
from trio_ws_demo.cli.jwtkeys import JWT_KEY_ENV, JWT_PUBLIC_KEY_ENV
from trio_ws_demo.cli.reference import markdown_table, replace_table
from trio_ws_demo.cli.schema import OPTIONS
from trio_ws_demo.cli.serve import REDIS_ENV

from .processes import listening_port, run_cli
from .wsraw import http_exchange, upgrade_request

TIMEOUT = 15
DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
LINE = re.compile(r"^(#\s)?([a-z-]+) = (.*?)\s+# (.*)$")


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees only the TRIO_WS_DEMO_* variables it sets."""
    import os

    for name in list(os.environ):
        if name.startswith("TRIO_WS_DEMO_"):
            monkeypatch.delenv(name)


def effective(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, tuple[str, str]]:
    """``serve --print-config``, in-process: each key's shown value and source."""
    assert main(["serve", *argv, "--print-config"]) == 0
    out = capsys.readouterr().out
    rows = {}
    for line in out.splitlines()[2:]:
        match = LINE.match(line)
        assert match, line
        rows[match[2]] = (match[3], match[4])
    return rows


def failure(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """The one line a refused setting prints (exit 2, nothing on stdout)."""
    assert main(["serve", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1, captured.err
    assert "Traceback" not in captured.err
    return captured.err.rstrip("\n")


# -- the one declaration ----------------------------------------------------------


def test_the_docs_table_is_the_one_the_schema_generates() -> None:
    text = DOCS.read_text()
    assert markdown_table() in text
    assert replace_table(text) == text, "run: nox -s docs"


def test_every_setting_has_one_flag_one_variable_and_one_key_and_old_names_stay() -> None:
    assert len({o.key for o in OPTIONS}) == len({o.env for o in OPTIONS}) == len(OPTIONS)
    envs = {o.key: o.env for o in OPTIONS}
    assert envs["token"] == TOKEN_ENV == "TRIO_WS_DEMO_TOKEN"
    assert envs["redis"] == REDIS_ENV == "TRIO_WS_DEMO_REDIS"
    assert envs["jwt-key"] == JWT_KEY_ENV == "TRIO_WS_DEMO_JWT_KEY"
    assert envs["jwt-public-key"] == JWT_PUBLIC_KEY_ENV == "TRIO_WS_DEMO_JWT_PUBLIC_KEY"
    assert envs["max-queue-bytes"] == "TRIO_WS_DEMO_MAX_QUEUE_BYTES"


# -- precedence: flag > environment > file > default -----------------------------

#: One setting of each kind: (key, file value as TOML, variable, flag args, shown at each level)
KINDS: list[tuple[str, str, str, list[str], tuple[str, str, str, str]]] = [
    ("max-clients", "500", "600", ["--max-clients", "700"], ("10000", "500", "600", "700")),
    (
        "handshake-timeout",
        "1.5",
        "2.5",
        ["--handshake-timeout", "3.5"],
        ("10.0", "1.5", "2.5", "3.5"),
    ),
    (
        "log-level",
        '"debug"',
        "warning",
        ["--log-level", "error"],
        ('"info"', '"debug"', '"warning"', '"error"'),
    ),
    ("echo", "true", "off", ["--echo"], ("false", "true", "false", "true")),
    (
        "allow-origin",
        '["https://f.example"]',
        "https://e1.example, https://e2.example",
        ["--allow-origin", "https://g.example"],
        (
            "[]",
            '["https://f.example"]',
            '["https://e1.example", "https://e2.example"]',
            '["https://g.example"]',
        ),
    ),
    ("token", '"file-secret"', "env-secret", ["--token", "flag-secret"], ("none",) + ("***",) * 3),
]


@pytest.mark.parametrize("level", ["default", "file", "env", "flag"])
def test_each_kind_of_setting_comes_from_the_strongest_source_that_has_it(
    level: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each level adds its source on top of the weaker ones; it must win."""
    depth = ["default", "file", "env", "flag"].index(level)
    config = tmp_path / "serve.toml"
    config.write_text("".join(f"{key} = {toml}\n" for key, toml, *_ in KINDS))
    argv = ["--config", str(config)] if depth >= 1 else []
    for key, _, env, flags, _ in KINDS:
        if depth >= 2:
            monkeypatch.setenv("TRIO_WS_DEMO_" + key.upper().replace("-", "_"), env)
        if depth >= 3:
            argv += flags
    rows = effective(capsys, *argv)
    for key, _, _, _, shown in KINDS:
        value, source = rows[key]
        assert value == shown[depth], key
        expected = {
            "default": "default",
            "file": f"file {config}",
            "env": "env TRIO_WS_DEMO_" + key.upper().replace("-", "_"),
            "flag": f"flag --{key}",
        }[level]
        assert source.startswith(expected), (key, source)


def test_a_flag_wins_even_when_it_says_the_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRIO_WS_DEMO_MAX_CLIENTS", "5")
    monkeypatch.setenv("TRIO_WS_DEMO_PORT", "9")
    rows = effective(capsys, "--max-clients", "10000")
    assert rows["max-clients"] == ("10000", "flag --max-clients")
    assert rows["port"] == ("9", "env TRIO_WS_DEMO_PORT")


def test_the_config_file_may_be_named_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "serve.toml"
    config.write_text("max-rooms = 42\n")
    monkeypatch.setenv("TRIO_WS_DEMO_CONFIG", str(config))
    assert effective(capsys)["max-rooms"] == ("42", f"file {config}")


# -- mistakes: one line, exit 2 -------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("max-client = 5", "unknown key 'max-client' (did you mean max-clients?)"),
        ("max_clients = 5", "unknown key 'max_clients' (did you mean max-clients?"),
        ("colour = 5", "unknown key 'colour'; the keys are serve's flags"),
        ('max-clients = "500"', 'max-clients: must be an integer, not the string "500"'),
        ("max-clients = 0", "max-clients: must be a whole number of at least 1, not '0'"),
        ("handshake-timeout = true", "handshake-timeout: must be a number, not the boolean true"),
        ("echo = 1", "echo: must be true or false, not the number 1"),
        ("allow-origin = [1]", "allow-origin: must be an array of strings, not an array"),
        ('slow-client = "dorp"', "slow-client: must be one of close, drop, not 'dorp' "),
        ("port = [1]", "port: must be an integer, not an array"),
        ("max-clients = ", "not valid TOML: "),
        ('token = ""', "token is empty, which would let anyone in; set it to the token"),
    ],
)
def test_a_file_mistake_is_one_line_naming_the_file_and_key(
    toml: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "serve.toml"
    config.write_text(toml + "\n")
    line = failure(capsys, "--config", str(config))
    assert line.startswith(f"error: {config}: {message}"), line
    if "dorp" in toml:
        assert line.endswith("(did you mean drop?)")


def test_a_file_mistake_is_found_even_under_a_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "serve.toml"
    config.write_text('max-clients = "lots"\n')
    line = failure(capsys, "--config", str(config), "--max-clients", "5")
    assert line.startswith(f"error: {config}: max-clients: must be an integer"), line


def test_a_missing_config_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.toml"
    assert failure(capsys, "--config", str(missing)) == (
        f"error: cannot read --config {missing}: No such file or directory"
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MAX_CLIENTS", "0", "must be a whole number of at least 1, not '0'"),
        ("MAX_CLIENTS", "many", "must be a whole number of at least 1, not 'many'"),
        ("PORT", "http", "must be a port number, not 'http'"),
        ("PING_TIMEOUT", "-1", "must be a positive number of seconds, not '-1'"),
        ("ECHO", "maybe", "must be 1, true, yes, on or 0, false, no, off, not 'maybe'"),
        ("SLOW_CLIENT", "dorp", "must be one of close, drop, not 'dorp' (did you mean drop?)"),
        ("TOKEN", " ", "is set but empty, which would let anyone in"),
    ],
)
def test_a_bad_variable_is_one_line_naming_it(
    name: str,
    value: str,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(f"TRIO_WS_DEMO_{name}", value)
    line = failure(capsys, "--print-config")
    assert line.startswith(f"error: $TRIO_WS_DEMO_{name}"), line
    assert message in line, line


def test_an_empty_variable_is_unset_unless_it_is_a_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRIO_WS_DEMO_MAX_CLIENTS", "")
    monkeypatch.setenv("TRIO_WS_DEMO_REDIS", "")
    rows = effective(capsys)
    assert rows["max-clients"] == ("10000", "default")
    assert rows["redis"] == ("none", "default")


def test_an_unknown_variable_is_a_warning_with_a_suggestion(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRIO_WS_DEMO_MAX_CLIENT", "3")
    monkeypatch.setenv("TRIO_WS_DEMO_TOKEN_HOSTS", "example.com")  # the client's: no warning
    assert main(["serve", "--print-config"]) == 0
    assert capsys.readouterr().err == (
        "warning: $TRIO_WS_DEMO_MAX_CLIENT is not a serve setting: ignored "
        "(did you mean $TRIO_WS_DEMO_MAX_CLIENTS?)\n"
    )


# -- --print-config ---------------------------------------------------------------------


def test_print_config_masks_secrets_and_redis_passwords_and_reads_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRIO_WS_DEMO_TOKEN", "hunter2-token")
    monkeypatch.setenv("TRIO_WS_DEMO_REDIS", "redis://:hunter2-redis@db.example:6379/0")
    argv = ["serve", "--jwt-key", "hunter2-jwt" * 3, "--max-rooms", "7", "--print-config"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out
    assert "# token = ***" in out and "# jwt-key = ***" in out
    assert '# redis = "redis://:***@db.example:6379/0"' in out
    assert len(out.splitlines()) == 2 + len(OPTIONS)  # a header, then every setting

    # Its output is a config file: fed back, the same values (the secrets aside).
    again = tmp_path / "printed.toml"
    again.write_text(out)
    assert tomllib.loads(out)["max-rooms"] == 7
    monkeypatch.delenv("TRIO_WS_DEMO_TOKEN")
    monkeypatch.delenv("TRIO_WS_DEMO_REDIS")
    first = {key: value for key, (value, _) in effective(capsys, "--max-rooms", "7").items()}
    second = effective(capsys, "--config", str(again))
    assert {key: value for key, (value, _) in second.items()} == first
    assert second["max-rooms"] == ("7", f"file {again}")


def test_help_never_shows_a_secret_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRIO_WS_DEMO_TOKEN", "hunter2-token")
    monkeypatch.setenv("TRIO_WS_DEMO_JWT_KEY", "hunter2-jwt")
    assert main(["serve", "--help"]) == 0
    assert "hunter2" not in capsys.readouterr().out


# -- --check-config -----------------------------------------------------------------------


def test_check_config_says_ok_and_does_not_listen(capsys: pytest.CaptureFixture[str]) -> None:
    # Port 1 is privileged: listening there would fail; checking does not bind.
    assert main(["serve", "--port", "1", "--check-config"]) == 0
    assert capsys.readouterr().out == "config OK\n"


@pytest.mark.parametrize(
    ("argv", "status", "start"),
    [
        (["--keyfile", "k.pem"], 2, "error: --keyfile needs --certfile"),
        (["--redis", "http://x"], 2, "error: --redis takes a redis://"),
        (["--certfile", "CERT"], 1, "error: no private key in "),
        (["--jwt-public-key", "/nonexistent.pem"], 1, "error: cannot read --jwt-public-key"),
        (["--token", ""], 2, "error: --token is empty, which would let anyone in"),
    ],
)
def test_check_config_runs_every_startup_check(
    argv: list[str], status: int, start: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if "CERT" in argv:
        cert = tmp_path / "cert.pem"
        trustme.CA().issue_cert("127.0.0.1").cert_chain_pems[0].write_to_path(str(cert))
        argv = [str(cert) if a == "CERT" else a for a in argv]
    assert main(["serve", *argv, "--check-config"]) == status
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(start) and len(captured.err.splitlines()) == 1, captured.err


def test_check_config_loads_a_certificate_from_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    issued = trustme.CA().issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    config = tmp_path / "serve.toml"
    config.write_text(f'certfile = "{cert}"\nkeyfile = "{key}"\n')
    assert main(["serve", "--config", str(config), "--check-config"]) == 0
    assert capsys.readouterr().out == "config OK\n"
    key.write_text("not a key")
    assert main(["serve", "--config", str(config), "--check-config"]) == 1
    assert "error: cannot load --certfile" in capsys.readouterr().err


# -- the Settings line, and values that reach a real server -------------------------


def test_the_settings_line_of_a_default_server() -> None:
    from trio_ws_demo.cli import build_parser
    from trio_ws_demo.cli.config import resolve

    settings = resolve(build_parser().parse_args(["serve"]), {}, None)
    assert settings_line(settings, "open") == (
        "Settings: auth open; history off; redis none; limits: defaults"
    )


def _head(path: str) -> bytes:
    return upgrade_request().replace(b"GET / ", f"GET {path} ".encode(), 1)


async def _status(port: int, path: str) -> int:
    return int((await http_exchange(port, _head(path))).split(b" ", 2)[1])


async def test_a_file_value_an_env_value_and_a_flag_reach_the_running_server(
    tmp_path: Path,
) -> None:
    config = tmp_path / "serve.toml"
    config.write_text("max-clients = 1\nhistory = 3\n")
    env = {"TRIO_WS_DEMO_MAX_ROOM_NAME": "5", "TRIO_WS_DEMO_TOKEN": "s3cret"}
    flags = ["--port", "0", "--config", str(config), "--handshake-timeout", "0.5"]
    with trio.fail_after(TIMEOUT):
        async with run_cli("serve", *flags, env=env) as serve:
            port = await listening_port(serve)
            assert await serve.readline() == (
                "Settings: auth shared token; history 3 messages / 1 MiB; redis none; "
                "limits: max-clients 1 (default 10000), max-room-name 5 bytes (default 128 bytes), "
                "handshake-timeout 0.5s (default 10s)"
            )
            assert await _status(port, "/abcdef?token=s3cret") == 400  # the variable's 5
            first = await trio.open_tcp_stream("127.0.0.1", port)
            await first.send_all(_head("/?token=s3cret"))
            assert (await first.receive_some()).startswith(b"HTTP/1.1 101 ")
            assert await _status(port, "/?token=s3cret") == 503  # the file's max-clients 1
            await first.aclose()
            silent = await trio.open_tcp_stream("127.0.0.1", port)
            with trio.fail_after(3):  # the flag's 0.5 s; the default 10 s would fail here
                assert await silent.receive_some() == b""
            await silent.aclose()
            serve.interrupt()
            assert await serve.process.wait() == 0


async def test_print_config_in_a_real_process_lists_sources_and_does_not_listen(
    tmp_path: Path,
) -> None:
    config = tmp_path / "serve.toml"
    config.write_text("max-clients = 500\n")
    env = {"TRIO_WS_DEMO_MAX_QUEUE": "77"}
    with trio.fail_after(TIMEOUT):
        async with run_cli(
            "serve", "--config", str(config), "--port", "9001", "--print-config", env=env
        ) as cli:
            assert await cli.process.wait() == 0
            lines = await cli.rest()
    assert lines[0].startswith("# trio-ws-demo serve: the effective settings")
    assert any(re.fullmatch(r"max-clients = 500 +# file .*serve\.toml", line) for line in lines)
    assert any(
        re.fullmatch(r"max-queue = 77 +# env TRIO_WS_DEMO_MAX_QUEUE", line) for line in lines
    )
    assert any(re.fullmatch(r"port = 9001 +# flag --port", line) for line in lines)
    assert any(re.fullmatch(r"history = 0 +# default", line) for line in lines)
    assert not any(line.startswith("Listening") for line in lines)
