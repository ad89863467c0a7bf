"""GET /monitoring/anomalies: the bands in-process, over the stored per-minute aggregates.

An injected shift in the stored predictions (three times the volume at a lower confidence, half
of it another class) is reported as anomalous and firing; a model whose series stays steady
is not."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from tests.helpers import auth

from nexus_ml.storage.aggregates import MINUTE, floor_to
from nexus_ml.storage.records import PredictionRecord, new_id, utcnow

M = "/api/v1/monitoring"
HISTORY = 120  # minutes of steady traffic
SHIFTED = 15  # the last minutes, shifted for one model


def _records(model: str, per_minute: int, minutes: range, end: Any, *, shifted: bool) -> list:
    out = []
    for m in minutes:
        at = end - timedelta(minutes=m) + timedelta(seconds=30)
        for i in range(per_minute):
            cls = "malignant" if shifted and i % 2 else "benign"
            conf = 0.6 if shifted else 0.9
            out.append(
                PredictionRecord(
                    new_id(), model, "v1", at, {}, cls, conf, {cls: conf}, latency_seconds=0.01
                )
            )
    return out


def _readings(client: TestClient) -> dict[tuple[str, str, str | None], dict[str, Any]]:
    r = client.get(M + "/anomalies", headers=auth("monitor"))
    assert r.status_code == 200, r.text
    return {(x["model"], x["signal"], x["predicted_class"]): x for x in r.json()["readings"]}


def test_a_shift_in_the_stored_aggregates_is_reported_and_a_steady_series_is_not(
    client: TestClient,
) -> None:
    end = floor_to(utcnow(), MINUTE)  # the minute under way is not scored: the last is end - 1
    store = client.app.state.service.store  # type: ignore[attr-defined]
    store.insert_predictions(
        _records("diagnostic", 10, range(SHIFTED + 1, HISTORY), end, shifted=False)
        + _records("diagnostic", 30, range(1, SHIFTED + 1), end, shifted=True)
        + _records("diabetes_risk", 10, range(1, HISTORY), end, shifted=False)
    )
    readings = _readings(client)
    for signal, cls in (
        ("predictions", None),
        ("confidence", None),
        ("class_share", "benign"),
        ("class_share", "malignant"),
    ):
        shifted = readings[("diagnostic", signal, cls)]
        assert shifted["anomalous"] and shifted["firing"], shifted
        # No week of history: every baseline is the trailing hour, so all three agree.
        scores = {b["score"] for b in shifted["baselines"]}
        assert len(scores) == 1 and abs(scores.pop()) > 5
    assert readings[("diagnostic", "predictions", None)]["value"] == 30 * 5 / 300
    steady = [v for (model, _, _), v in readings.items() if model == "diabetes_risk"]
    assert {v["signal"] for v in steady} == {"predictions", "confidence", "class_share"}
    for v in steady:
        assert not v["anomalous"] and not v["firing"], v
        assert [b["baseline"] for b in v["baselines"]] == ["7d", "14d", "21d"]
        assert all(b["score"] == 0 for b in v["baselines"])


def test_no_stored_predictions_no_readings(client: TestClient) -> None:
    assert _readings(client) == {}
