"""No answer, metric or record holds NaN or infinity, on SQLite and PostgreSQL.

Finite features that overflow the model's arithmetic get a 422 naming ``features`` (or the
batch row) and change nothing: no record, no observation. A prediction whose record no store
can hold is never answered 200. Every body is parsed as strict JSON.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from tests.helpers import auth

from nexus_ml.ml.datasets import load_dataset

PREDICT = "/api/v1/models/diagnostic/predict"
BIG = 1.7e308
MAX = sys.float_info.max
# Families that a refused prediction must leave exactly as they were.
WATCHED = (
    "ml_model_predictions",
    "ml_model_prediction_duration_seconds",
    "ml_model_confidence_score",
    "ml_data_quality",
    "ml_db_records",
)


def strict_json(text: str) -> Any:
    """json.loads that refuses NaN and +/-Infinity instead of reading them as floats."""

    def refuse(constant: str) -> Any:
        raise AssertionError(f"non-JSON constant {constant} in the body")

    return json.loads(text, parse_constant=refuse)


def issue_row(**values: float) -> dict[str, float]:
    names = load_dataset("diagnostic").feature_names
    row = dict.fromkeys(names, 0.01)
    row.update(values)
    return row


def good_row(i: int) -> dict[str, float]:
    data = load_dataset("diagnostic")
    return dict(zip(data.feature_names, map(float, data.X[i]), strict=True))


def watched_samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[Any, ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for metric in registry.collect()
        if metric.name.startswith(WATCHED)
        for s in metric.samples
    }


def stored_count(client: TestClient) -> int:
    service = client.app.state.service  # type: ignore[attr-defined]
    assert client.portal.call(service.writer.flush, 10.0)  # type: ignore[union-attr]
    return int(service.store.count_predictions())


def post(client: TestClient, body: dict[str, Any]) -> Any:
    return client.post(
        PREDICT,
        content=json.dumps(body, allow_nan=False),
        headers={**auth("predict"), "Content-Type": "application/json"},
    )


OVERFLOWING = {
    "issue": issue_row(mean_smoothness=BIG, mean_compactness=BIG),
    "huge-negative": issue_row(mean_smoothness=-BIG),
    "mixed-signs": issue_row(mean_smoothness=BIG, mean_compactness=-BIG),
    "near-max": issue_row(mean_concavity=MAX, worst_smoothness=MAX, mean_fractal_dimension=MAX),
}


@pytest.mark.parametrize("case", list(OVERFLOWING))
def test_overflowing_features_are_refused_and_change_nothing(
    client: TestClient, registry: CollectorRegistry, case: str
) -> None:
    before = watched_samples(registry)
    bodies = [
        ({"features": OVERFLOWING[case]}, "features"),
        # One poisoned row among good ones: the whole batch is refused, the row named.
        ({"instances": [good_row(0), good_row(1), OVERFLOWING[case], good_row(2)]}, "instances[2]"),
    ]
    for body, field in bodies:
        r = post(client, body)
        assert r.status_code == 422, r.text
        err = strict_json(r.text)
        assert err["field"] == field
        assert err["detail"].startswith(f"{field}: values are outside what the model can evaluate")
        # No value is echoed.
        assert "e+308" not in r.text and "1.7" not in r.text and "inf" not in r.text.lower()
    assert stored_count(client) == 0
    assert watched_samples(registry) == before

    # The service carries on: a good prediction afterwards is answered, stored and observed.
    r = post(client, {"features": good_row(5)})
    assert r.status_code == 200, r.text
    answer = strict_json(r.text)
    assert 0.5 <= answer["confidence"] <= 1.0
    assert stored_count(client) == 1
    conf_sum = registry.get_sample_value("ml_model_confidence_score_sum", {"model": "diagnostic"})
    assert conf_sum == pytest.approx(answer["confidence"])


def test_huge_but_evaluable_features_are_answered_finite(
    client: TestClient, registry: CollectorRegistry
) -> None:
    """No over-refusal: a saturated but finite decision is a valid answer, stored and observed."""
    rows = [issue_row(mean_smoothness=s * 1e300) for s in (1.0, -1.0)]
    rows += [issue_row(mean_area=BIG), issue_row(worst_area=-BIG)]  # tiny weights: no overflow
    r = post(client, {"instances": rows})
    assert r.status_code == 200, r.text
    answers = strict_json(r.text)["predictions"]
    assert all(a["confidence"] == 1.0 for a in answers)
    for a in answers:
        assert sum(a["probabilities"].values()) == pytest.approx(1.0)
    assert stored_count(client) == len(rows)
    service = client.app.state.service  # type: ignore[attr-defined]
    stored = service.store.get_prediction(answers[2]["id"])
    # (PostgreSQL JSONB gives the number back as an integer of the same value.)
    assert float(stored.features["mean_area"]) == BIG and stored.confidence == 1.0
    conf_sum = registry.get_sample_value("ml_model_confidence_score_sum", {"model": "diagnostic"})
    assert conf_sum == pytest.approx(len(rows))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_an_unrecordable_answer_is_never_a_200(
    client: TestClient, registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch, bad: float
) -> None:
    """Defence in depth: were a predictor to return a non-finite number, nothing is recorded,
    observed or answered 200 — for a single instance and for every row of a batch."""
    service = client.app.state.service  # type: ignore[attr-defined]
    predictor = service.models.get("diagnostic").predictor
    monkeypatch.setattr(predictor, "predict_one", lambda row: (1, np.array([0.5, bad])))
    good_indices, good_proba = predictor.predict_batch_indices(
        np.array([list(good_row(i).values()) for i in range(3)])
    )
    poisoned = good_proba.copy()
    poisoned[2] = [bad, 0.5]
    monkeypatch.setattr(predictor, "predict_batch_indices", lambda X: (good_indices, poisoned))
    before = watched_samples(registry)
    for body in ({"features": good_row(0)}, {"instances": [good_row(i) for i in range(3)]}):
        r = post(client, body)
        assert r.status_code == 500
        assert strict_json(r.text) == {
            "detail": "the prediction could not be recorded",
            "field": None,
        }
    assert stored_count(client) == 0
    assert watched_samples(registry) == before
    assert (
        registry.get_sample_value(
            "ml_errors_total", {"component": "database", "error_type": "Unrecordable"}
        )
        == 2
    )


def test_a_record_the_database_refuses_is_counted_and_the_rest_stored(
    client: TestClient, registry: CollectorRegistry, settings: Any
) -> None:
    """The writer's refusals reach ml_db_records_rejected_total{model, reason} (0 from start)."""
    labels = {"model": "diagnostic", "reason": "integrity"}
    assert registry.get_sample_value("ml_db_records_rejected_total", labels) == 0
    ids = [post(client, {"features": good_row(i)}).json()["id"] for i in range(3)]
    service = client.app.state.service  # type: ignore[attr-defined]
    assert stored_count(client) == 3
    template = service.store.get_prediction(ids[0])
    # A record only a bug could make (no class): refused by both stores for a constraint.
    poisoned = dataclasses.replace(template, id="f" * 32, predicted_class=None)
    service.writer.submit(poisoned)
    ids += [post(client, {"features": good_row(i)}).json()["id"] for i in range(3, 6)]
    deadline = time.monotonic() + 20
    while registry.get_sample_value("ml_db_records_rejected_total", labels) != 1:
        assert time.monotonic() < deadline, "the refusal was not counted"
        time.sleep(0.02)
    assert stored_count(client) == 6
    rejected = list((settings.data_dir / "spill").glob("rejected-*.jsonl"))
    assert len(rejected) == 1 and json.loads(rejected[0].read_bytes())[0] == "f" * 32


@pytest.mark.parametrize(
    ("confidence", "latency"), [(math.nan, 0.001), (math.inf, 0.001), (0.9, -math.inf)]
)
def test_the_observer_never_observes_a_non_finite_value(
    client: TestClient, registry: CollectorRegistry, confidence: float, latency: float
) -> None:
    service = client.app.state.service  # type: ignore[attr-defined]
    loaded = service.models.get("diagnostic")
    before = watched_samples(registry)
    with pytest.raises(ValueError, match="non-finite"):
        service.publisher.observer(loaded).observe([], "benign", confidence, latency)
    assert watched_samples(registry) == before
