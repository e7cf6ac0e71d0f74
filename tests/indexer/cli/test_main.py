"""The `lookalike` parser: help with examples, option checks, and the shells' commands
loaded from entry points (a broken shell is named once and the core still works)."""

import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest
from cli_help import help_of

from indexer import plugins
from indexer.cli import COMMANDS_GROUP, build_parser, main

CORE_COMMANDS = [
    ["ingest"], ["embed"], ["index"], ["index", "build"], ["index", "stats"],
    ["index", "rollback"], ["index", "reindex"], ["search"], ["explain"], ["map"], ["evaluate"],
    ["train"], ["models"], ["jobs"],
]


def core_only():
    return build_parser(shells=[])


@pytest.mark.parametrize("command", CORE_COMMANDS, ids=" ".join)
def test_every_core_command_has_help_with_an_example(command, capsys):
    out = help_of(core_only(), command, capsys)
    assert "examples:" in out and "lookalike " in out.split("examples:")[1]


def test_bad_option_values_are_refused_by_the_parser(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "indexer.cli", "search", "q.jpg", "-k", "0"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "must be at least 1" in result.stderr


def shell(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=COMMANDS_GROUP)


def test_the_installed_shells_add_their_commands():
    parser = build_parser()
    assert parser.parse_args(["worker", "--queues", "index"]).queues == ["index"]
    assert parser.parse_args(["serve", "--bind", ":9000"]).bind == ":9000"
    with pytest.raises(SystemExit):
        core_only().parse_args(["serve"])  # the core alone has no server


def test_a_shell_that_fails_to_import_is_named_in_one_warning(capsys):
    parser = build_parser(shells=[shell("gone", "no_such_shell_module:register"),
                                  shell("search_api", "search_api.cli:register")])
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["lookalike: warning: commands not loaded from 'gone' "
                   "(no_such_shell_module:register): ModuleNotFoundError: No module named "
                   "'no_such_shell_module'"]
    assert parser.parse_args(["index", "stats"]).handler.__name__ == "cmd_index_stats"
    assert parser.parse_args(["serve"]).handler.__name__ == "cmd_serve"  # the others load


def test_a_shell_whose_register_fails_is_named_and_the_core_still_runs(
    tmp_path, monkeypatch, capsys
):
    broken = shell("clash", "indexer.cli.jobs:register")  # a second `jobs`: argparse refuses
    monkeypatch.setattr(plugins, "entry_points",
                        lambda group: [broken] if group == COMMANDS_GROUP else [])
    assert main(["--home", str(tmp_path / "home"), "jobs"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "no jobs yet\n"
    (warning,) = captured.err.strip().splitlines()
    assert warning.startswith(
        "lookalike: warning: commands not loaded from 'clash' (indexer.cli.jobs:register): ")
    assert "conflicting subparser: jobs" in warning


def test_one_entry_point_per_name_the_first_found(monkeypatch):
    found = [shell("workers", "first:register"), shell("api", "api:register"),
             shell("workers", "stale.copy:register")]
    monkeypatch.setattr(plugins.metadata, "entry_points", lambda group: found)
    assert [p.value for p in plugins.entry_points(COMMANDS_GROUP)] == [
        "api:register", "first:register"]
