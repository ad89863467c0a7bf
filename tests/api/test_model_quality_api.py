"""Model-quality monitoring end to end through the API, on SQLite and PostgreSQL.

Traffic goes in through ``/predict`` and feedback; ``POST /monitoring/drift/run`` computes;
what is asserted is what Prometheus would scrape from ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from tests.helpers import auth

from nexus_ml.api.app import create_app
from nexus_ml.config import Settings
from nexus_ml.ml.datasets import load_dataset

MODEL = "diagnostic"
PREDICT = f"/api/v1/models/{MODEL}/predict"
DRIFT_RUN = "/api/v1/monitoring/drift/run"
SHIFTED = "mean_radius"
MIN_WINDOW = 100
WINDOW = 200
DATA = load_dataset(MODEL)


@pytest.fixture
def client(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    """The service with a small drift window, so a test sends hundreds of rows, not thousands."""
    settings = make_settings(drift_min_window=MIN_WINDOW, drift_window_size=WINDOW)
    with TestClient(create_app(settings, registry=CollectorRegistry())) as c:
        yield c


def reference_rows(n: int, seed: int, shift_std: float = 0.0) -> list[dict[str, float]]:
    """``n`` rows drawn from the reference data; ``SHIFTED`` moved by ``shift_std`` stds."""
    rng = np.random.default_rng(seed)
    X = DATA.X[rng.integers(len(DATA.X), size=n)].copy()
    j = DATA.feature_names.index(SHIFTED)
    X[:, j] += shift_std * DATA.X[:, j].std()
    return [dict(zip(DATA.feature_names, map(float, row), strict=True)) for row in X]


def predict(client: TestClient, rows: list[dict[str, float]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for start in range(0, len(rows), 50):
        r = client.post(
            PREDICT, json={"instances": rows[start : start + 50]}, headers=auth("predict")
        )
        assert r.status_code == 200, r.text
        out.extend(r.json()["predictions"])
    return out


def run_job(client: TestClient) -> dict[str, Any]:
    # The job reads stored rows; predictions still in the writer's queue are not in the
    # window yet (the job does not flush first), so write them out before asking.
    service = client.app.state.service  # type: ignore[attr-defined]
    client.portal.call(service.writer.flush)  # type: ignore[union-attr]
    r = client.post(DRIFT_RUN, headers=auth("admin"))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["ran"] is True
    result: dict[str, Any] = body["models"][MODEL]
    return result


def scrape(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of ``/metrics``, keyed by name and label set."""
    r = client.get("/metrics")
    assert r.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_one_shifted_feature_is_the_only_one_detected(client: TestClient) -> None:
    predict(client, reference_rows(WINDOW, seed=1, shift_std=1.0))
    result = run_job(client)
    assert result["window_size"] == WINDOW
    assert result["drift"]["drifted_features"] == [SHIFTED]

    m = scrape(client)
    assert value(m, "ml_data_drift_score", model=MODEL, feature=SHIFTED, method="psi") > 0.1
    # The score DataDriftDetected compares with data_drift_high: PSI, for a number.
    decision = value(m, "ml_data_drift_score", model=MODEL, feature=SHIFTED, method="decision")
    assert decision == value(m, "ml_data_drift_score", model=MODEL, feature=SHIFTED, method="psi")
    for feature in DATA.feature_names:
        detected = value(m, "ml_data_drift_detected", model=MODEL, feature=feature)
        assert detected == (1.0 if feature == SHIFTED else 0.0), feature
    assert value(m, "ml_data_drift_share", model=MODEL) == pytest.approx(1 / 30)
    assert value(m, "ml_data_drift_window_size", model=MODEL) == WINDOW

    # The period report shows the same latest result per model.
    r = client.get("/api/v1/monitoring/reports/summary", headers=auth("monitor"))
    assert r.status_code == 200, r.text
    models = {m["model"]: m for m in r.json()["models"]}
    ours, other = models[MODEL], models["diabetes_risk"]
    assert ours["predictions"] == WINDOW
    assert ours["drifted_features"] == [SHIFTED]
    assert ours["drift_share"] == pytest.approx(1 / 30)
    assert ours["drift_computed_at"] is not None
    assert ours["latency_seconds"]["p50"] is not None
    assert other["predictions"] == 0
    assert other["drifted_features"] == []


def test_reference_traffic_detects_nothing(client: TestClient) -> None:
    predict(client, reference_rows(WINDOW, seed=2))
    result = run_job(client)
    assert result["drift"]["decided"] is True
    assert result["drift"]["drifted_features"] == []
    m = scrape(client)
    for feature in DATA.feature_names:
        assert value(m, "ml_data_drift_detected", model=MODEL, feature=feature) == 0.0
    assert value(m, "ml_data_drift_share", model=MODEL) == 0.0


def test_below_min_window_no_decision_is_exported(client: TestClient) -> None:
    predict(client, reference_rows(MIN_WINDOW - 1, seed=3, shift_std=3.0))
    result = run_job(client)
    assert result["drift"]["decided"] is False
    detected = [k for k in scrape(client) if k[0] == "ml_data_drift_detected"]
    assert detected == []  # no verdict rather than a verdict from noise


def test_out_of_range_values_lower_the_quality_score(client: TestClient) -> None:
    predict(client, reference_rows(20, seed=4))
    assert value(scrape(client), "ml_data_quality_score", model=MODEL) == 1.0

    bad = reference_rows(10, seed=5)
    top = float(DATA.X[:, DATA.feature_names.index(SHIFTED)].max())
    for row in bad:
        row[SHIFTED] = top * 10  # a finite number far outside the training range
    predict(client, bad)
    m = scrape(client)
    score = value(m, "ml_data_quality_score", model=MODEL)
    assert score == pytest.approx(1 - 10 / (30 * 30))  # 10 bad values of 30 rows x 30 features
    issues = value(
        m, "ml_data_quality_issues_total", model=MODEL, feature=SHIFTED, kind="out_of_range"
    )
    assert issues == 10
    # The window job sees the same issues in the stored rows.
    assert run_job(client)["quality"]["by_feature"] == {SHIFTED: {"out_of_range": 10}}


def test_feedback_moves_realised_accuracy_and_the_estimate_is_exported(
    client: TestClient,
) -> None:
    preds = predict(client, reference_rows(30, seed=6))
    classes = DATA.classes

    def label(batch: list[dict[str, Any]], correct: bool) -> None:
        for p in batch:
            other = next(c for c in classes if c != p["predicted_class"])
            actual = p["predicted_class"] if correct else other
            r = client.post(
                f"/api/v1/predictions/{p['id']}/feedback",
                json={"actual": actual},
                headers=auth("predict"),
            )
            assert r.status_code == 201, r.text

    def accuracy() -> float:
        run_job(client)
        return value(scrape(client), "ml_model_accuracy", model=MODEL)

    label(preds[:10], correct=False)
    assert accuracy() == 0.0
    label(preds[10:20], correct=True)
    assert accuracy() == pytest.approx(0.5)  # correct labels: up
    label(preds[20:30], correct=False)
    assert accuracy() == pytest.approx(1 / 3)  # wrong labels: down

    m = scrape(client)
    assert value(m, "ml_model_accuracy_samples", model=MODEL) == 30
    assert value(m, "ml_model_feedback_total", model=MODEL, correct="true") == 10
    assert value(m, "ml_model_feedback_total", model=MODEL, correct="false") == 20
    # CBPE needs no labels: it estimates from the 30 predictions' confidence.
    estimated = value(m, "ml_model_estimated_accuracy", model=MODEL)
    stderr = value(m, "ml_model_estimated_accuracy_stderr", model=MODEL)
    assert 0.5 < estimated <= 1.0
    assert 0.0 < stderr < 0.2
