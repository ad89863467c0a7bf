"""Shared fixtures: the bundled models are trained once per session (they take ~0.1 s)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nexus_ml.ml.datasets import BUNDLED_DATASETS, Dataset, load_dataset
from nexus_ml.ml.training import TrainResult, train_pipeline


@pytest.fixture(scope="session")
def datasets() -> dict[str, Dataset]:
    return {name: load_dataset(name) for name in BUNDLED_DATASETS}


@pytest.fixture(scope="session")
def trained(datasets: dict[str, Dataset]) -> dict[str, TrainResult]:
    return {
        name: train_pipeline(d.X, d.y, d.feature_names, seed=42) for name, d in datasets.items()
    }


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    path = tmp_path / "models"
    path.mkdir()
    return path
