"""Class labels that training accepts are stored by both stores and take feedback."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from tests.helpers import auth
from tests.ml.forge import relabel

from nexus_ml.api.app import create_app
from nexus_ml.ml.datasets import load_dataset
from nexus_ml.ml.labels import MAX_LABEL_CHARS
from nexus_ml.ml.sources import train_from_csv

LONGEST = "L" * (MAX_LABEL_CHARS - 5) + "-ção良"
ACCENTED = "benígno (estádio IIb)"


def _csv(path: Path, labels: list[str]) -> Path:
    d = load_dataset("diabetes_risk")
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["age", "sex", "bmi", "outcome"])
        for i in range(80):
            # BMI in kg/m2 (the unscaled data): above the dataset's median of ~25.7 or not.
            w.writerow([*d.X[i, :3].tolist(), labels[int(d.X[i, 2] > 25.7)]])
    return path


def test_longest_and_non_ascii_labels_are_stored_and_take_feedback(
    make_settings: Any, registry: CollectorRegistry, tmp_path: Path
) -> None:
    settings = make_settings()
    assert len(LONGEST) == MAX_LABEL_CHARS
    train_from_csv(
        _csv(tmp_path / "d.csv", [LONGEST, ACCENTED]), "outcome", "mine", settings.model_path
    )
    row = {"age": 50, "sex": 1, "bmi": 32.0}
    with TestClient(create_app(settings, registry=registry)) as client:
        url = "/api/v1/models/mine/predict"
        one = client.post(url, json={"features": row}, headers=auth("predict"))
        many = client.post(
            url, json={"instances": [row, {**row, "bmi": 20.0}]}, headers=auth("predict")
        )
        assert one.status_code == 200 and many.status_code == 200, (one.text, many.text)
        answers = [one.json(), *many.json()["predictions"]]
        assert {a["predicted_class"] for a in answers} == {LONGEST, ACCENTED}
        service = client.app.state.service  # type: ignore[attr-defined]
        assert client.portal.call(service.writer.flush, 10.0)
        # Every answered prediction is stored, the longest label included, on both stores.
        for a in answers:
            stored = service.store.get_prediction(a["id"])
            assert stored.predicted_class == a["predicted_class"]
            assert set(stored.probabilities) == {LONGEST, ACCENTED}
        for a, actual in zip(answers, [LONGEST, ACCENTED, LONGEST], strict=True):
            r = client.post(
                f"/api/v1/predictions/{a['id']}/feedback",
                json={"actual": actual},
                headers=auth("predict"),
            )
            assert r.status_code == 201, r.text
            assert r.json()["actual"] == actual
        assert service.store.count_predictions() == 3
        assert service.writer.pending == 0
        assert (
            registry.get_sample_value(
                "ml_db_records_rejected_total", {"model": "mine", "reason": "data"}
            )
            == 0
        )


def test_a_bundle_with_a_bad_class_is_refused_at_start_and_the_rest_served(
    make_settings: Any, registry: CollectorRegistry
) -> None:
    settings = make_settings()
    # A foreign tool's bundle: every hash right, one label longer than both stores allow.
    relabel(
        settings.model_path,
        "diabetes_risk",
        ["high", "x" * (MAX_LABEL_CHARS + 1)],
        as_name="foreign",
    )
    with TestClient(create_app(settings, registry=registry)) as client:
        r = client.get("/api/v1/models", headers=auth("predict"))
        names = {m["name"] for m in json.loads(r.text)}
        assert names == {"diagnostic", "diabetes_risk"}
        assert (
            registry.get_sample_value(
                "ml_errors_total", {"component": "model", "error_type": "BundleRefused"}
            )
            == 1
        )
        r = client.post(
            "/api/v1/models/foreign/predict", json={"features": {}}, headers=auth("predict")
        )
        assert r.status_code == 404
