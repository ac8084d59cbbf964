"""The `lunarhub` command is one argparse tree: help everywhere, --version, grouped commands."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

import lunarhub
from lunarhub import cli


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    """(command path, its help text): the line in its parent's listing, else its own description."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            listed = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield (*path, name), (listed.get(name) or sub.description or "").strip()
                yield from _commands(sub, (*path, name))


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_every_command_and_subcommand_has_help_text() -> None:
    found = dict(_commands(cli.build_parser()))
    assert {("users", "add"), ("course", "create"), ("render", "hpc"), ("catalog", "validate"),
            ("publish",), ("doctor",)} <= set(found)
    missing = [" ".join(path) for path, text in found.items() if not text]
    assert missing == []


def test_users_subcommands_list_their_help(capsys: pytest.CaptureFixture[str]) -> None:
    out = _help(["users"], capsys)
    for action in ("list", "add", "set-groups", "remove", "import"):
        assert action in out
    assert "comma-separated group names" in _help(["users", "add"], capsys)


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"lunarhub {lunarhub.__version__}"


@pytest.mark.parametrize("command", ["course", "render", "doctor", "up", "users"])
def test_config_appears_at_most_once_in_a_commands_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = _help([command], capsys)
    declared = [line for line in out.splitlines() if line.strip().startswith("--config")]
    assert len(declared) <= 1 and out.count("[--config") <= 1, out


def test_help_groups_operator_and_in_server_commands(capsys: pytest.CaptureFixture[str]) -> None:
    out = _help([], capsys)
    operator = out[out.index("operator commands"):out.index("in-server commands")]
    in_server = out[out.index("in-server commands"):]

    def listed(part: str) -> set[str]:
        return {m.group(1) for m in re.finditer(r"^  (\S+)  ", part, re.M)}

    assert {"up", "down", "status", "config", "users", "token", "passwords", "audit", "backup", "restore",
            "upgrade", "monitoring", "usage", "catalog", "render", "course"} == listed(operator)
    assert {"publish", "unpublish", "dashboards", "doctor"} == listed(in_server)
    commands = {path[0] for path, _ in _commands(cli.build_parser()) if len(path) == 1}
    assert commands == listed(operator) | listed(in_server)


def test_unknown_command_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["frobnicate"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'frobnicate'" in err and "publish" in err


def test_config_is_accepted_after_the_commands_that_always_took_it(tmp_path, capsys) -> None:
    bad = tmp_path / "d.yaml"
    bad.write_text("institutions: {}\ngroups: {}\nusers: {x: {groups: [nope]}}\n")
    assert cli.main(["render", "--config", str(bad), "kubernetes"]) == 2
    assert cli.main(["course", "--config", str(bad), "status", "x"]) == 2
    # The subcommand's own option has no default that would hide the one before it.
    assert cli.main(["--config", str(bad), "course", "status", "x"]) == 2
    assert "users.x.groups" in capsys.readouterr().err


def test_courses_do_not_import_the_cli() -> None:
    code = ("import json, sys; import lunarhub.courses.manage; "
            "print(json.dumps([m for m in sys.modules if m.startswith('lunarhub.cli')]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
