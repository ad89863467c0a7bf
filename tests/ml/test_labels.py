"""One class-label rule (1-64 characters, no control or invisible format characters), enforced
where a label enters: training (CSV and arrays, and the CLI) and bundle loading. Messages never
echo the label."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from tests.ml.forge import relabel
from typer.testing import CliRunner

from nexus_ml.cli.main import app as cli
from nexus_ml.ml.bundle import BundleError, load_bundle, save_bundle
from nexus_ml.ml.datasets import Dataset
from nexus_ml.ml.labels import MAX_LABEL_CHARS, LabelError, check_class_labels, label_problem
from nexus_ml.ml.registry import ModelRegistry
from nexus_ml.ml.sources import train_from_csv
from nexus_ml.ml.training import TrainingDataError, TrainResult, train_pipeline

# Each breaks the rule; each holds the marker, which must never appear in a message.
MARK = "zq9"
BAD_LABELS = {
    "too-long": MARK + "x" * MAX_LABEL_CHARS,
    "nul": f"{MARK}\x00b",
    "newline": f"{MARK}\nb",
    "escape": f"{MARK}\x1b[31m",
    "delete": f"{MARK}\x7fb",
    "c1-control": f"{MARK}\x85b",
    "bidi-override": f"{MARK}\u202eb",
    "zero-width-space": f"{MARK}\u200b",
    "line-separator": f"{MARK}\u2028b",
    "lone-surrogate": f"{MARK}\ud800",
}
GOOD_LABELS = ["a", "x" * MAX_LABEL_CHARS, "benígno", "良性", "class 2 (stage IIb)", "🙂"]


@pytest.mark.parametrize("label", GOOD_LABELS)
def test_good_labels_pass(label: str) -> None:
    assert label_problem(label) is None


@pytest.mark.parametrize("case", list(BAD_LABELS))
def test_bad_labels_are_named_by_position_not_echoed(case: str) -> None:
    assert label_problem(BAD_LABELS[case]) is not None
    with pytest.raises(LabelError, match=r"^class label 2 ") as info:
        check_class_labels(["fine", BAD_LABELS[case], "also fine"])
    assert MARK not in str(info.value)


@pytest.mark.parametrize("value", ["", None, 3, b"bytes"])
def test_non_text_and_empty_labels_are_refused(value: object) -> None:
    assert label_problem(value) is not None


def write_csv(path: Path, labels: list[str], d: Dataset) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["age", "sex", "bmi", "outcome"])
        for i in range(60):
            writer.writerow([*d.X[i, :3].tolist(), labels[i % len(labels)]])
    return path


# (A lone surrogate cannot be written to a UTF-8 file: read_csv refuses such a file whole.)
@pytest.mark.parametrize("case", [c for c in BAD_LABELS if c != "lone-surrogate"])
def test_training_from_csv_refuses_a_bad_label_by_line(
    case: str, tmp_path: Path, model_path: Path, datasets: dict[str, Dataset]
) -> None:
    labels = ["low", "high", BAD_LABELS[case]]
    path = write_csv(tmp_path / "data.csv", labels, datasets["diabetes_risk"])
    with pytest.raises(TrainingDataError, match=r"^line 4: the target value ") as info:
        train_from_csv(path, "outcome", "user_model", model_path)
    assert MARK not in str(info.value)
    assert list(model_path.iterdir()) == []


@pytest.mark.parametrize("case", list(BAD_LABELS))
def test_training_from_arrays_refuses_a_bad_label(case: str, datasets: dict[str, Dataset]) -> None:
    d = datasets["diabetes_risk"]
    y = np.array(["low", "high", BAD_LABELS[case]] * 20, dtype=object)
    with pytest.raises(TrainingDataError, match="class label") as info:
        train_pipeline(d.X[:60], y, d.feature_names)
    assert MARK not in str(info.value)


def test_training_accepts_the_longest_and_non_ascii_labels(
    tmp_path: Path, model_path: Path, datasets: dict[str, Dataset]
) -> None:
    labels = ["x" * MAX_LABEL_CHARS, "benígno 良性"]
    path = write_csv(tmp_path / "data.csv", labels, datasets["diabetes_risk"])
    version, _ = train_from_csv(path, "outcome", "user_model", model_path)
    bundle = load_bundle(model_path, "user_model", version)
    assert sorted(bundle.metadata["classes"]) == sorted(labels)


@pytest.mark.parametrize("case", ["too-long", "nul", "bidi-override"])
def test_cli_train_refuses_with_a_non_zero_exit_and_no_echo(
    case: str, tmp_path: Path, datasets: dict[str, Dataset]
) -> None:
    path = write_csv(tmp_path / "data.csv", ["low", BAD_LABELS[case]], datasets["diabetes_risk"])
    models = tmp_path / "models"
    env = {**os.environ, "ML_MODEL_PATH": str(models), "ML_DATA_DIR": str(tmp_path / "data")}
    result = CliRunner().invoke(
        cli, ["train", "--data", str(path), "--target", "outcome", "--name", "mine"], env=env
    )
    assert result.exit_code == 2, result.output
    assert "cannot train" in result.output and "line 3" in result.output
    assert MARK not in result.output
    assert not (models / "mine").exists()


@pytest.mark.parametrize("case", ["too-long", "nul", "escape", "line-separator"])
def test_a_bundle_with_bad_classes_is_refused_by_name_and_the_rest_served(
    case: str, model_path: Path, datasets: dict[str, Dataset], trained: dict[str, TrainResult]
) -> None:
    result = trained["diabetes_risk"]
    for name in ("good_model", "bad_model"):
        save_bundle(
            model_path,
            name,
            result.pipeline,
            schema=result.schema,
            classes=result.classes,
            metrics=result.metrics,
            profile=result.profile,
        )
    version = relabel(model_path, "bad_model", ["high", BAD_LABELS[case]])
    with pytest.raises(BundleError) as info:
        load_bundle(model_path, "bad_model")
    message = str(info.value)
    assert "class label" in message and info.value.reason == "metadata"
    assert version != "-"
    assert MARK not in message
    registry = ModelRegistry(model_path)
    refused = registry.load_all()
    assert list(refused) == ["bad_model"] and MARK not in str(refused["bad_model"])
    assert registry.names() == ["good_model"]
