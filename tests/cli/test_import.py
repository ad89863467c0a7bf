"""``nexus-ml import``: saves a bundle from a notebook's pipeline, or exits 2 saying why."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from tests.helpers import cli_env
from tests.ml.notebook import dump, forest_pipeline, read_notebook_frame, write_reference
from typer.testing import CliRunner

from nexus_ml.cli import app
from nexus_ml.ml.bundle import load_bundle
from nexus_ml.ml.datasets import READMISSION_TARGET


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path / "models", tmp_path)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    reference = write_reference(tmp_path / "extract.csv", n_rows=300)
    X, y = read_notebook_frame(reference)
    return dump(forest_pipeline().fit(X, y), tmp_path / "forest.skops"), reference


def _import(env: dict[str, str], model: Path, reference: Path, *extra: str) -> tuple[int, str]:
    args = ["import", "--model", str(model), "--reference", str(reference)]
    args += ["--target", READMISSION_TARGET, "--name", "ward", *extra]
    result = CliRunner().invoke(app, args, env=env)
    return result.exit_code, " ".join(result.output.split())  # unwrap Rich's line breaks


def test_import_saves_a_bundle(env: dict[str, str], files: tuple[Path, Path]) -> None:
    code, output = _import(env, *files, "--nullable", "age")
    assert code == 0, output
    assert "saved model 'ward' version" in output and "on the 300 reference rows" in output
    meta = load_bundle(env["ML_MODEL_PATH"], "ward").metadata
    assert meta["source"]["nullable"] == ["age"]
    assert next(f for f in meta["features"] if f["name"] == "age")["nullable"]


def test_a_mismatch_exits_2_naming_it_literally(
    env: dict[str, str], files: tuple[Path, Path], tmp_path: Path
) -> None:
    model, reference = files
    frame = pd.read_csv(reference).rename(columns={"albumin": "albumin [g/dL]"})
    renamed = tmp_path / "renamed.csv"
    frame.to_csv(renamed, index=False)
    code, output = _import(env, model, renamed)
    assert code == 2
    # Brackets print as written: Rich markup neither eats nor chokes on them.
    assert "cannot import: the pipeline needs columns the CSV lacks: 'albumin'" in output
    assert "'albumin [g/dL]'" in output
    assert not (Path(env["ML_MODEL_PATH"]) / "ward").exists()


def test_import_declares_segments_positive_class_and_threshold(
    env: dict[str, str], files: tuple[Path, Path]
) -> None:
    extra = ["--segments", "site,age:0-40-65-120", "--positive-class", "no", "--threshold", "0.7"]
    code, output = _import(env, *files, *extra)
    assert code == 0, output
    info = load_bundle(env["ML_MODEL_PATH"], "ward").info
    assert info.positive_class == "no" and info.threshold == 0.7
    assert [s.feature for s in info.segment_list()] == ["site", "age"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--segments", "ward"], "cannot import: segment 'ward': not a feature of the model"),
        (["--segments", "hba1c"], "segment hba1c: a numeric feature with more than 10"),
        (["--positive-class", "maybe"], "the positive class is not one of the target's classes"),
        (["--threshold", "0"], "the threshold must lie strictly between 0 and 1"),
    ],
)
def test_bad_declarations_exit_2(
    env: dict[str, str], files: tuple[Path, Path], extra: list[str], message: str
) -> None:
    code, output = _import(env, *files, *extra)
    assert code == 2
    assert message in output
    assert not (Path(env["ML_MODEL_PATH"]) / "ward").exists()
