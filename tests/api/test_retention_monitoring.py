"""After a purge the monitoring API answers about the purged window exactly as before: the
answers come from the aggregates (and stored results), which retention keeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.helpers import auth

from nexus_ml.service.wiring import Service
from nexus_ml.storage.partitions import create_days
from nexus_ml.storage.records import PredictionRecord, new_id

M = "/api/v1/monitoring"
# Whole minutes (the aggregates' bucket), well past the 180-day default retention.
OLD = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=200)
WINDOW = {"since": (OLD - timedelta(hours=1)).isoformat(), "until": (OLD + timedelta(hours=1))}
# Endpoints answering about a past window, each with the window asked.
WINDOWED = [
    ("/metrics/predictions", {}),
    ("/metrics/predictions/timeline", {"step_seconds": 600}),
    ("/performance/models", {}),
    ("/reports/summary", {}),
]
# Answering from stored drift/quality results, which retention keeps. Not here:
# /performance/clinical over an explicit window reads the raw rows (scored_rows), so it has
# nothing to say about a purged window (docs/operations.md, "Retention").
STORED = [("/data-quality/overview", {})]


def _record(model: str, version: str, at: datetime, i: int) -> PredictionRecord:
    predicted = "malignant" if i % 3 else "benign"
    p = 0.55 + (i % 40) / 100
    return PredictionRecord(
        id=new_id(),
        model=model,
        version=version,
        created_at=at,
        features={"mean_radius": 14.0 + i / 100},
        predicted_class=predicted,
        confidence=p,
        probabilities={predicted: p, "benign" if i % 3 else "malignant": 1 - p},
        latency_seconds=0.001 * (1 + i % 17),
    )


def _get(client: TestClient, path: str, params: dict[str, Any]) -> Any:
    r = client.get(M + path, params=params, headers=auth("monitor"))
    assert r.status_code == 200, r.text
    return r.json()


def _answers(client: TestClient) -> dict[str, Any]:
    until = {"until": WINDOW["until"].isoformat()}
    answers = {p: _get(client, p, {**params, **WINDOW, **until}) for p, params in WINDOWED}
    answers |= {p: _get(client, p, params) for p, params in STORED}
    return answers


def _without_now(answer: Any) -> Any:
    """The answer minus the fields that say when it was made (not what it says)."""
    if isinstance(answer, dict):
        return {
            k: _without_now(v)
            for k, v in answer.items()
            if k not in {"generated_at", "uptime_seconds", "availability"}
        }
    if isinstance(answer, list):
        return [_without_now(v) for v in answer]
    return answer


@pytest.fixture
def service(client: TestClient) -> Service:
    nexus: Service = client.app.state.service  # type: ignore[attr-defined]
    return nexus


def test_monitoring_answers_about_a_purged_window_do_not_change(
    client: TestClient, service: Service
) -> None:
    store = service.store
    if store.engine.dialect.name == "postgresql":
        with store.engine.begin() as conn:  # the old day has its partition: it is dropped
            create_days(conn, [OLD.date()])
    version = service.models.get("diagnostic").version
    old = [_record("diagnostic", version, OLD + timedelta(seconds=37 * i), i) for i in range(60)]
    recent = [_record("diagnostic", version, datetime.now(UTC) - timedelta(hours=1), 99)]
    assert store.insert_predictions([*old, *recent]) == 61
    for r in old[::4]:
        store.add_feedback(r.id, "benign")

    before = _answers(client)
    assert before["/metrics/predictions"]["total"] == 60  # the compare below is not vacuous

    outcome = service.retention.run(timedelta(days=180), "test")

    assert outcome["ran"] is True
    assert outcome["result"]["predictions"] == 60 and outcome["result"]["feedback"] == 15
    assert store.count_predictions("diagnostic") == 1
    after = _answers(client)
    for path in before:
        assert _without_now(after[path]) == _without_now(before[path]), path
