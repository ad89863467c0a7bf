"""Every help screen reads as text: no type placeholders after flags, no reST markup."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from nexus_ml.cli import app


def _paths(command: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The argv of every command and group, the root included."""
    paths = [prefix]
    # Typer vendors its own click: a group is whatever has subcommands.
    commands = getattr(command, "commands", None) or {}
    for name, sub in sorted(commands.items()):
        paths.extend(_paths(sub, (*prefix, name)))
    return paths


COMMANDS = _paths(typer.main.get_command(app))


def test_every_command_is_walked() -> None:
    # The walk must reach the subcommands, or the checks below prove nothing.
    names = {" ".join(p) for p in COMMANDS}
    assert {"serve", "train", "drift", "stack up", "render"} <= names


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda p: " ".join(p) or "nexus-ml")
def test_help_is_plain_text(argv: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*argv, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Usage:" in out
    # typer 0.29 printed `--json <bool>` although `--json true` is refused
    assert "<bool>" not in out
    # docstrings in reST (``stack up``) were shown with their backticks
    assert "``" not in out
