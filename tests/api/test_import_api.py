"""Imported pipelines over HTTP, on SQLite and PostgreSQL: answers equal the notebook's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from tests.helpers import auth, single_openmp_thread
from tests.ml.notebook import PIPELINES, dump, json_rows, read_notebook_frame, write_reference

from nexus_ml.api.app import create_app
from nexus_ml.config import Settings
from nexus_ml.ml.datasets import READMISSION_TARGET
from nexus_ml.ml.importing import import_pipeline

pytestmark = pytest.mark.usefixtures("one_openmp_thread")


@pytest.fixture(scope="module")
def notebook(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Each pipeline fitted in a notebook on the reference CSV, saved with skops."""
    folder = tmp_path_factory.mktemp("notebook")
    reference = write_reference(folder / "extract.csv", n_rows=400, seed=21)
    X, y = read_notebook_frame(reference)
    with single_openmp_thread():
        fitted = {kind: build().fit(X, y) for kind, build in PIPELINES.items()}
    files = {kind: dump(p, folder / f"{kind}.skops") for kind, p in fitted.items()}
    return {"reference": reference, "X": X, "fitted": fitted, "files": files}


@pytest.fixture
def served(
    notebook: dict[str, Any], settings: Settings, registry: CollectorRegistry, model_dir: Path
) -> Iterator[TestClient]:
    """A service serving, beside the bundled models, both imported pipelines."""
    for kind, path in notebook["files"].items():
        import_pipeline(path, notebook["reference"], READMISSION_TARGET, f"{kind}_ward", model_dir)
    with TestClient(create_app(settings, registry=registry)) as c:
        yield c


@pytest.mark.parametrize("kind", sorted(PIPELINES))
def test_answers_equal_the_notebooks_predict_proba(
    served: TestClient, notebook: dict[str, Any], kind: str
) -> None:
    X: pd.DataFrame = notebook["X"].iloc[:120]
    pipeline = notebook["fitted"][kind]
    expected = pipeline.predict_proba(X)
    rows = json_rows(X)
    assert any(v is None for row in rows for v in row.values())  # missing labs and categories
    url = f"/api/v1/models/{kind}_ward/predict"
    r = served.post(url, json={"instances": rows}, headers=auth("predict"))
    assert r.status_code == 200, r.text
    answers = r.json()["predictions"]
    classes = [str(c) for c in pipeline.classes_]
    got = np.array([[a["probabilities"][c] for c in classes] for a in answers])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    assert [a["predicted_class"] for a in answers] == list(pipeline.predict(X))
    for i in (0, 5):  # the one-row path too
        r = served.post(url, json={"features": rows[i]}, headers=auth("predict"))
        assert r.status_code == 200, r.text
        one = r.json()["probabilities"]
        np.testing.assert_allclose([one[c] for c in classes], expected[i], rtol=0, atol=1e-9)


def test_the_imported_schema_is_listed(served: TestClient) -> None:
    r = served.get("/api/v1/models/hgb_ward", headers=auth("predict"))
    assert r.status_code == 200, r.text
    features = {f["name"]: f for f in r.json()["features"]}
    assert features["site"]["type"] == "category"
    assert features["site"]["categories"] == ["east", "north", "south", "west"]
    assert features["albumin"]["nullable"] and not features["age"]["nullable"]
