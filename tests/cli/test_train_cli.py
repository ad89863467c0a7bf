"""``nexus-ml train`` with estimators and declared column types."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.helpers import WINE, cli_env, write_mixed_csv
from typer.testing import CliRunner

from nexus_ml.cli import app
from nexus_ml.ml.bundle import load_bundle

pytestmark = pytest.mark.usefixtures("one_openmp_thread")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path / "models", tmp_path)


def test_train_takes_an_estimator_and_declared_types(tmp_path: Path, env: dict[str, str]) -> None:
    data = write_mixed_csv(tmp_path / "ward.csv")
    args = ["train", "--data", str(data), "--target", "outcome", "--name", "ward"]
    extra = ["--estimator", "hist_gradient_boosting", "--categorical", "age", "--nullable", "sex"]
    result = CliRunner().invoke(app, [*args, *extra], env=env)
    assert result.exit_code == 0, result.output
    assert "saved model 'ward'" in result.output
    bundle = load_bundle(tmp_path / "models", "ward")
    features = {f["name"]: f for f in bundle.metadata["features"]}
    assert features["age"]["type"] == "category"
    assert features["sex"]["nullable"] and features[WINE]["nullable"]
    assert bundle.metadata["source"]["estimator"] == "hist_gradient_boosting"
    assert bundle.metadata["source"]["categorical"] == ["age"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--estimator", "svm"], "estimator must be one of"),
        (["--categorical", "nope"], "--categorical: 'nope' is not a feature column"),
        (["--segments", "weight"], "cannot train: segment 'weight': not a feature of the model"),
        (["--segments", "age:65-40"], "segment age: edges must be strictly increasing"),
        (["--segments", "age:0-x"], "segment age: bin edges must be numbers joined by '-'"),
        (["--positive-class", "z"], "the positive class is not one of the target's classes"),
        (["--threshold", "1"], "the threshold must lie strictly between 0 and 1"),
        (["--threshold", "-0.5"], "the threshold must lie strictly between 0 and 1"),
    ],
)
def test_train_refuses_with_a_message_and_a_non_zero_exit(
    tmp_path: Path, env: dict[str, str], extra: list[str], message: str
) -> None:
    data = write_binary_csv(tmp_path / "ward.csv")
    args = ["train", "--data", str(data), "--target", "outcome", "--name", "ward", *extra]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "models" / "ward").exists()


def test_train_declares_segments_positive_class_and_threshold(
    tmp_path: Path, env: dict[str, str]
) -> None:
    data = write_binary_csv(tmp_path / "ward.csv")
    args = ["train", "--data", str(data), "--target", "outcome", "--name", "ward"]
    extra = ["--segments", "site, age:0-40-65-120", "--positive-class", "b", "--threshold", "0.3"]
    result = CliRunner().invoke(app, [*args, *extra], env=env)
    assert result.exit_code == 0, result.output
    info = load_bundle(tmp_path / "models", "ward").info
    assert info.positive_class == "b" and info.threshold == 0.3
    assert [s.feature for s in info.segment_list()] == ["site", "age"]
    assert info.segment_list()[1].edges == (0.0, 40.0, 65.0, 120.0)
    assert info.baseline is not None


def test_the_segment_cap_is_the_deployment_setting(tmp_path: Path, env: dict[str, str]) -> None:
    data = write_binary_csv(tmp_path / "ward.csv")
    args = ["train", "--data", str(data), "--target", "outcome", "--name", "ward"]
    args += ["--segments", "site,age:0-40-65-120"]  # 5 + 4 groups
    capped = CliRunner().invoke(app, args, env={**env, "ML_SEGMENT_MAX_GROUPS": "8"})
    assert capped.exit_code == 2
    assert "segments declare 9 groups, more than the maximum of 8" in " ".join(
        capped.output.split()
    )
    assert not (tmp_path / "models" / "ward").exists()
    allowed = CliRunner().invoke(app, args, env={**env, "ML_SEGMENT_MAX_GROUPS": "9"})
    assert allowed.exit_code == 0, allowed.output


def test_a_threshold_on_a_multiclass_target_exits_2(tmp_path: Path, env: dict[str, str]) -> None:
    data = write_mixed_csv(tmp_path / "ward.csv")
    args = ["train", "--data", str(data), "--target", "outcome", "--name", "ward"]
    result = CliRunner().invoke(app, [*args, "--threshold", "0.4"], env=env)
    assert result.exit_code == 2, result.output
    assert "apply to binary models only; the target has 3 classes" in " ".join(
        result.output.split()
    )


def test_a_threshold_that_is_not_a_number_is_a_usage_error(
    tmp_path: Path, env: dict[str, str]
) -> None:
    data = write_binary_csv(tmp_path / "ward.csv")
    args = ["train", "--data", str(data), "--target", "outcome", "--name", "ward"]
    result = CliRunner().invoke(app, [*args, "--threshold", "high"], env=env)
    assert result.exit_code == 2
    assert not (tmp_path / "models" / "ward").exists()


def write_binary_csv(path: Path) -> Path:
    """The mixed CSV with its three classes folded into two (a: 'a', b: 'b' and 'c')."""
    source = write_mixed_csv(path.with_suffix(".mixed.csv"))
    lines = source.read_text().splitlines()
    folded = [lines[0]] + [
        line[: line.rindex(",")] + ("," + ("a" if line.endswith(",a") else "b"))
        for line in lines[1:]
    ]
    path.write_text("\n".join(folded) + "\n")
    return path
