"""The third bundled model over HTTP, on SQLite and PostgreSQL: categories, nulls, warnings."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from tests.helpers import auth, single_openmp_thread

from nexus_ml.api.app import create_app
from nexus_ml.config import Settings
from nexus_ml.ml.datasets import READMISSION
from nexus_ml.ml.sources import ensure_bundled_models

PREDICT = f"/api/v1/models/{READMISSION}/predict"
ROW: dict[str, Any] = {
    "age": 81,
    "sex": "female",
    "admission_type": "emergency",
    "site": "west",
    "length_of_stay": 9,
    "prior_admissions": 2,
    "n_medications": 11,
    "hba1c": None,
    "creatinine": 1.4,
    "albumin": 3.1,
    "hemoglobin": None,
    "discharge_to": "facility",
}

pytestmark = pytest.mark.usefixtures("one_openmp_thread")


@pytest.fixture(scope="module")
def readmission_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """readmission_risk trained once, as `serve` trains it on first start."""
    path = tmp_path_factory.mktemp("readmission") / "models"
    with single_openmp_thread():
        assert ensure_bundled_models(path, names=(READMISSION,)) == [READMISSION]
    return path


@pytest.fixture
def served(
    readmission_bundle: Path, settings: Settings, registry: CollectorRegistry, model_dir: Path
) -> Iterator[TestClient]:
    shutil.copytree(readmission_bundle / READMISSION, model_dir / READMISSION)
    with TestClient(create_app(settings, registry=registry)) as c:
        yield c


def test_nulls_and_categories_are_answered(served: TestClient) -> None:
    r = served.post(PREDICT, json={"features": ROW}, headers=auth("predict"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body["probabilities"]) == {"no", "yes"} and body["warnings"] == []


def test_an_unseen_site_is_answered_with_a_warning(served: TestClient) -> None:
    r = served.post(
        PREDICT, json={"features": {**ROW, "site": "clinic_9"}}, headers=auth("predict")
    )
    assert r.status_code == 200, r.text
    assert r.json()["warnings"] == [{"feature": "site", "kind": "unseen_category"}]


def test_a_null_where_training_never_had_one_is_refused(served: TestClient) -> None:
    r = served.post(
        PREDICT, json={"features": {**ROW, "age": None, "sex": None}}, headers=auth("predict")
    )
    assert r.status_code == 422, r.text
    assert [p["field"] for p in r.json()["problems"]] == ["age", "sex"]
