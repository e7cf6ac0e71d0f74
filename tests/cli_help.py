"""The ``--help`` text of a `lookalike` command, for the tests of the core's and the shells'
commands."""

from __future__ import annotations

import argparse

import pytest


def help_of(parser: argparse.ArgumentParser, command: list[str], capsys) -> str:
    """What ``lookalike COMMAND --help`` prints; the help must exit 0."""
    with pytest.raises(SystemExit) as exited:
        parser.parse_args([*command, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out
