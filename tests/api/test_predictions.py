"""Predictions and feedback through the HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from tests.helpers import auth

from nexus_ml.ml.bundle import load_bundle
from nexus_ml.ml.datasets import load_dataset

PREDICT = "/api/v1/models/diagnostic/predict"


def diagnostic_row(i: int = 0) -> dict[str, float]:
    data = load_dataset("diagnostic")
    return dict(zip(data.feature_names, map(float, data.X[i]), strict=True))


def stored_count(client: TestClient) -> int:
    service = client.app.state.service  # type: ignore[attr-defined]
    client.portal.call(service.writer.flush)  # type: ignore[union-attr]
    return service.store.count_predictions()


def test_single_prediction_matches_scikit_learn(client: TestClient, settings: Any) -> None:
    row = diagnostic_row(3)
    r = client.post(PREDICT, json={"features": row}, headers=auth("predict"))
    assert r.status_code == 200, r.text
    body = r.json()
    pipeline = load_bundle(settings.model_path, "diagnostic").pipeline
    names = list(row)
    proba = pipeline.predict_proba(np.array([[row[n] for n in names]]))[0]
    expected = pipeline.classes_[int(np.argmax(proba))]
    assert body["predicted_class"] == expected
    assert body["model"] == "diagnostic" and body["version"]
    for cls, p in zip(pipeline.classes_, proba, strict=True):
        assert body["probabilities"][cls] == pytest.approx(p, abs=1e-9)
    assert body["confidence"] == pytest.approx(max(proba), abs=1e-9)
    assert len(body["id"]) == 32


def test_batch_prediction_and_records_stored(client: TestClient) -> None:
    rows = [diagnostic_row(i) for i in range(5)]
    r = client.post(PREDICT, json={"instances": rows}, headers=auth("predict"))
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert len(preds) == 5 and len({p["id"] for p in preds}) == 5
    assert stored_count(client) == 5
    stored = client.app.state.service.store.get_prediction(preds[2]["id"])  # type: ignore[attr-defined]
    assert stored.features == rows[2]
    assert stored.predicted_class == preds[2]["predicted_class"]


def _bad(row: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    out = dict(row)
    out[key] = value
    return out


@pytest.mark.parametrize(
    ("name", "make_body", "status", "field"),
    [
        ("nan", lambda r: {"features": _bad(r, "mean_radius", float("nan"))}, 422, "mean_radius"),
        ("inf", lambda r: {"features": _bad(r, "mean_radius", float("inf"))}, 422, "mean_radius"),
        ("-inf", lambda r: {"features": _bad(r, "mean_area", float("-inf"))}, 422, "mean_area"),
        (
            "missing",
            lambda r: {"features": {k: v for k, v in r.items() if k != "mean_texture"}},
            422,
            "mean_texture",
        ),
        ("extra", lambda r: {"features": {**r, "patient_name": 1.0}}, 422, "patient_name"),
        ("string", lambda r: {"features": _bad(r, "mean_radius", "12.5")}, 422, "mean_radius"),
        ("bool", lambda r: {"features": _bad(r, "mean_radius", True)}, 422, "mean_radius"),
        ("null", lambda r: {"features": _bad(r, "mean_radius", None)}, 422, "mean_radius"),
        ("list", lambda r: {"features": _bad(r, "mean_radius", [1.0])}, 422, "mean_radius"),
        ("features not object", lambda r: {"features": [1, 2]}, 422, "features"),
        ("both", lambda r: {"features": r, "instances": [r]}, 422, "body"),
        ("neither", lambda r: {}, 422, "body"),
        ("unknown top field", lambda r: {"features": r, "extra": 1}, 422, "extra"),
        ("empty batch", lambda r: {"instances": []}, 422, "instances"),
        (
            "bad instance",
            lambda r: {"instances": [r, _bad(r, "mean_radius", "x")]},
            422,
            "instances[1].mean_radius",
        ),
    ],
)
def test_bad_input_is_refused_and_nothing_written(
    shared_client: TestClient, name: str, make_body: Any, status: int, field: str
) -> None:
    body = json.dumps(make_body(diagnostic_row()), allow_nan=True)
    r = shared_client.post(
        PREDICT, content=body, headers={**auth("predict"), "Content-Type": "application/json"}
    )
    assert r.status_code == status, (name, r.text)
    err = r.json()
    assert err["field"] == field, err
    assert field.split(".")[-1] in err["detail"] or field == "body"
    # The offending value is never echoed back.
    assert "12.5" not in err["detail"] and "nan" not in err["detail"].split(":")[0].lower()
    assert stored_count(shared_client) == 0


def test_invalid_json_and_empty_body(shared_client: TestClient) -> None:
    h = {**auth("predict"), "Content-Type": "application/json"}
    r = shared_client.post(PREDICT, content=b"{not json", headers=h)
    assert r.status_code == 400 and r.json()["field"] == "body"
    r = shared_client.post(PREDICT, content=b"", headers=h)
    assert r.status_code == 422
    assert stored_count(shared_client) == 0


def test_unknown_model_is_404(shared_client: TestClient) -> None:
    r = shared_client.post(
        "/api/v1/models/nope/predict", json={"features": diagnostic_row()}, headers=auth("predict")
    )
    assert r.status_code == 404
    assert r.json() == {"detail": "unknown model 'nope'", "field": "name"}
    assert stored_count(shared_client) == 0


def test_oversized_body_refused_before_reading(make_settings: Any, registry: Any) -> None:
    from nexus_ml.api.app import create_app

    app = create_app(make_settings(max_body_bytes=4096), registry=registry)
    with TestClient(app) as c:
        big = {"instances": [diagnostic_row()] * 20}  # ~ 20 KB
        r = c.post(PREDICT, json=big, headers=auth("predict"))
        assert r.status_code == 413
        assert stored_count(c) == 0


def test_batch_over_limit_refused(make_settings: Any, registry: Any) -> None:
    from nexus_ml.api.app import create_app

    app = create_app(make_settings(max_batch=3), registry=registry)
    with TestClient(app) as c:
        r = c.post(PREDICT, json={"instances": [diagnostic_row()] * 4}, headers=auth("predict"))
        assert r.status_code == 422
        assert r.json()["field"] == "instances"
        assert "at most 3" in r.json()["detail"]
        assert stored_count(c) == 0


def test_feedback_round_trip_and_errors(client: TestClient) -> None:
    r = client.post(PREDICT, json={"features": diagnostic_row()}, headers=auth("predict"))
    pred = r.json()
    url = f"/api/v1/predictions/{pred['id']}/feedback"
    # The label arrives while the record may still be queued: accepted all the same.
    r = client.post(url, json={"actual": pred["predicted_class"]}, headers=auth("predict"))
    assert r.status_code == 201, r.text
    assert r.json() == {
        "prediction_id": pred["id"],
        "model": "diagnostic",
        "actual": pred["predicted_class"],
        "correct": True,
    }
    r = client.post(url, json={"actual": pred["predicted_class"]}, headers=auth("predict"))
    assert r.status_code == 409
    r = client.post(
        f"/api/v1/predictions/{'0' * 32}/feedback",
        json={"actual": "benign"},
        headers=auth("predict"),
    )
    assert r.status_code == 404 and r.json()["field"] == "prediction_id"
    r = client.post(
        "/api/v1/predictions/../feedback", json={"actual": "benign"}, headers=auth("predict")
    )
    assert r.status_code == 404


def test_feedback_with_invalid_label_writes_nothing(client: TestClient) -> None:
    pred = client.post(PREDICT, json={"features": diagnostic_row()}, headers=auth("predict")).json()
    url = f"/api/v1/predictions/{pred['id']}/feedback"
    for body in (
        {"actual": "maybe"},
        {"actual": ""},
        {"actual": 1},
        {},
        {"actual": "benign", "x": 1},
    ):
        r = client.post(url, json=body, headers=auth("predict"))
        assert r.status_code == 422, (body, r.text)
    service = client.app.state.service  # type: ignore[attr-defined]
    assert service.store.labelled_predictions("diagnostic", pred_time(service, pred["id"])) == []


def pred_time(service: Any, pid: str) -> Any:
    return service.store.get_prediction(pid).created_at


def test_models_listing_and_detail(shared_client: TestClient) -> None:
    r = shared_client.get("/api/v1/models", headers=auth("predict"))
    assert r.status_code == 200
    names = {m["name"] for m in r.json()}
    assert names == {"diagnostic", "diabetes_risk"}
    detail = shared_client.get("/api/v1/models/diagnostic", headers=auth("predict")).json()
    assert len(detail["features"]) == 30
    assert detail["classes"] == ["benign", "malignant"] or set(detail["classes"]) == {
        "benign",
        "malignant",
    }
    assert 0.9 < detail["training_metrics"]["holdout_accuracy"] <= 1.0
    assert detail["versions"] == [detail["version"]]
    assert (detail["positive_class"], detail["threshold"]) == ("malignant", None)
    assert detail["segments"] == ["all"]  # no demographic feature declared
    risk = shared_client.get("/api/v1/models/diabetes_risk", headers=auth("predict")).json()
    assert risk["positive_class"] == "high"
    assert risk["segments"][:4] == ["all", "sex=1", "sex=2", "sex=other"]
    assert "age=40-65" in risk["segments"]
    assert shared_client.get("/api/v1/models/NOPE", headers=auth("predict")).status_code == 404


def test_a_training_run_waits_for_a_promote_then_hot_swaps(client: TestClient) -> None:
    before = client.get("/api/v1/models/diagnostic", headers=auth("admin")).json()["version"]
    r = client.post("/api/v1/models/diagnostic/train", json={"seed": 7}, headers=auth("admin"))
    assert r.status_code == 202, r.text
    run_id = r.json()["id"]
    deadline = time.monotonic() + 60
    status = None
    while time.monotonic() < deadline:
        run = client.get(f"/api/v1/training/runs/{run_id}", headers=auth("admin")).json()
        status = run["status"]
        if status in ("succeeded", "failed"):
            break
        # Predictions keep being served while training runs.
        p = client.post(PREDICT, json={"features": diagnostic_row()}, headers=auth("predict"))
        assert p.status_code == 200
    assert status == "succeeded", run
    assert run["metrics"]["holdout_accuracy"] > 0.9
    # Manual policy (the default): saved beside the champion, which keeps serving.
    detail = client.get("/api/v1/models/diagnostic", headers=auth("admin")).json()
    assert detail["version"] == before != run["version"]
    assert detail["versions"] == sorted([before, run["version"]])
    [report] = client.get(
        "/api/v1/models/diagnostic/promotion-reports", headers=auth("monitor")
    ).json()
    assert (report["decision"], report["candidate_version"]) == ("held", run["version"])
    promote = f"/api/v1/models/diagnostic/versions/{run['version']}/promote"
    assert client.post(promote, headers=auth("admin")).status_code == 200
    detail = client.get("/api/v1/models/diagnostic", headers=auth("admin")).json()
    assert detail["version"] == run["version"]
    p = client.post(PREDICT, json={"features": diagnostic_row()}, headers=auth("predict")).json()
    assert p["version"] == run["version"]
    assert client.get(f"/api/v1/training/runs/{'f' * 32}", headers=auth("admin")).status_code == 404
    assert client.post("/api/v1/models/nope/train", headers=auth("admin")).status_code == 404


@pytest.mark.parametrize(
    ("make_body", "counted"),
    [
        (
            lambda r: {"features": _bad(r, "mean_radius", float("nan"))},
            ("mean_radius", "non_finite"),
        ),
        (lambda r: {"features": _bad(r, "mean_area", "12.5")}, ("mean_area", "wrong_type")),
        (lambda r: {"features": _bad(r, "mean_texture", None)}, ("mean_texture", "missing")),
        (
            lambda r: {"features": {k: v for k, v in r.items() if k != "mean_radius"}},
            ("mean_radius", "missing"),
        ),
        (
            lambda r: {"instances": [r, r, r, _bad(r, "mean_area", True)]},
            ("mean_area", "wrong_type"),
        ),
        # Client-chosen names are never labels, however they are spelled.
        (lambda r: {"features": {**r, "instances[0].mean_radius": 1.0}}, None),
        (lambda r: {"features": {**r, "x.mean_radius": 1.0}}, None),
        (lambda r: {"features": [1, 2]}, None),
    ],
)
def test_a_refused_value_is_counted_by_schema_feature_and_kind(
    client: TestClient, registry: Any, make_body: Any, counted: tuple[str, str] | None
) -> None:
    body = json.dumps(make_body(diagnostic_row()), allow_nan=True)
    r = client.post(
        PREDICT, content=body, headers={**auth("predict"), "Content-Type": "application/json"}
    )
    assert r.status_code == 422, r.text
    issues = {
        (s.labels["feature"], s.labels["kind"]): s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == "ml_data_quality_issues_total" and s.labels["model"] == "diagnostic"
    }
    assert issues == ({counted: 1.0} if counted else {})
