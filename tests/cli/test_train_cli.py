"""``nexus-ml train`` with estimators and declared column types."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.helpers import KEYS, WINE, write_mixed_csv
from typer.testing import CliRunner

from nexus_ml.cli import app
from nexus_ml.ml.bundle import load_bundle

pytestmark = pytest.mark.usefixtures("one_openmp_thread")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "ML_MODEL_PATH": str(tmp_path / "models"),
        "ML_DATA_DIR": str(tmp_path / "data"),
        "ML_DATABASE_URL": f"sqlite:///{tmp_path / 'nexus.db'}",
        "ML_API_KEYS": ",".join(f"{s}:{k}" for s, k in KEYS.items()),
    }


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
    ],
)
def test_train_refuses_with_a_message_and_a_non_zero_exit(
    tmp_path: Path, env: dict[str, str], extra: list[str], message: str
) -> None:
    data = write_mixed_csv(tmp_path / "ward.csv")
    args = ["train", "--data", str(data), "--target", "outcome", "--name", "ward", *extra]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "models" / "ward").exists()
