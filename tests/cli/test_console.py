"""CLI messages print literally: brackets in messages, names and paths are text, not markup."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest
from tests.helpers import KEYS
from typer.testing import CliRunner, Result

import nexus_ml.cli as cli_package
from nexus_ml.cli import app
from nexus_ml.cli.console import make_console, problem
from nexus_ml.cli.drift import model_table

CLI_SOURCES = sorted(Path(cli_package.__file__).parent.glob("*.py"))
# A Rich markup tag: [red], [/red], [/], [bold yellow]...
STYLE = r"(?:bold|dim|italic|underline|reverse|red|green|yellow|blue|magenta|cyan|white|black)"
MARKUP_TAG = re.compile(rf"\[/\]|\[/?{STYLE}(?: {STYLE})*\]")


def string_literals(source: str) -> list[str]:
    """Every string literal (f-string parts included) of a Python source."""
    kinds = {tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return [t.string for t in tokens if t.type in kinds]


@pytest.fixture
def settings_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a CLI command that writes models under ``tmp_path`` only."""
    return {
        "ML_MODEL_PATH": str(tmp_path / "models"),
        "ML_DATA_DIR": str(tmp_path / "data"),
        "ML_API_KEYS": ",".join(f"{s}:{k}" for s, k in KEYS.items()),
    }


def train(tmp_path: Path, env: dict[str, str], *, target: str, name: str) -> Result:
    """``nexus-ml train`` on a small two-column CSV (x, label)."""
    data = tmp_path / "data.csv"
    rows = "\n".join(f"{i},{i % 2}" for i in range(40))
    data.write_text(f"x,label\n{rows}\n", encoding="utf-8")
    args = ["train", "--data", str(data), "--target", target, "--name", name]
    return CliRunner().invoke(app, args, env=env)


def test_a_regex_in_an_error_message_prints_whole(
    tmp_path: Path, settings_env: dict[str, str]
) -> None:
    r = train(tmp_path, settings_env, target="label", name="Bad")
    assert r.exit_code == 2
    assert "must match ^[a-z][a-z0-9_]{0,63}$" in " ".join(r.output.split())


def test_a_closing_tag_in_a_column_name_prints_instead_of_crashing(
    tmp_path: Path, settings_env: dict[str, str]
) -> None:
    r = train(tmp_path, settings_env, target="a[/]b", name="m")
    # Before: rich.errors.MarkupError out of console.print.
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert r.exit_code == 2
    assert "'a[/]b'" in r.output


def test_table_cells_with_brackets_print_literally() -> None:
    console = make_console()
    result = {
        "version": "v[1]",
        "window_size": 300,
        "drift": {
            "decided": True,
            "drifted_features": ["od280/od315[/]", "[bold]x"],
            "features": {
                "od280/od315[/]": {"scores": {"psi": 0.5}},
                "[bold]x": {"scores": {"psi": 0.2}},
            },
        },
    }
    with console.capture() as captured:
        console.print(model_table("m", result))
    out = captured.get()
    assert "od280/od315[/]" in out and "[bold]x" in out and "v[1]" in out


def test_a_missing_rate_drift_is_named_as_such() -> None:
    result = {
        "drift": {
            "decided": True,
            "drifted_features": ["lab", "age"],
            "features": {
                "lab": {
                    "scores": {"psi": 0.01, "missing": 0.3},
                    "missing": {"drifted": True, "share": 0.2, "reference_share": 0.05},
                },
                "age": {"scores": {"psi": 0.4}, "missing": {"drifted": False}},
            },
        },
    }
    console = make_console(stderr=False)
    console.width = 200
    with console.capture() as captured:
        console.print(model_table("m", result))
    assert "2/2: lab (missing 5% → 20%), age" in captured.get()


def test_problem_styles_the_label_only() -> None:
    text = problem("cannot train:", "column [red] is empty")
    assert text.plain == "cannot train: column [red] is empty"
    assert [(s.start, s.end, str(s.style)) for s in text.spans] == [(0, 13, "red")]


@pytest.mark.parametrize("path", CLI_SOURCES, ids=lambda p: p.name)
def test_cli_modules_print_through_the_literal_console(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    if path.name != "console.py":
        # One factory: a Console or Progress built elsewhere would parse markup again.
        assert "Console(" not in source and "Progress(" not in source
        tags = [t for lit in string_literals(source) for t in MARKUP_TAG.findall(lit)]
        assert not tags, tags
