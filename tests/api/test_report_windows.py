"""The period report and the predictions timeline count exactly the stored predictions of the
asked model inside the asked window widened to whole minutes (what the aggregates hold, and
what the answer echoes), in buckets aligned to the epoch, and say since when the availability
was counted (in UTC)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.helpers import active_alert, auth

from nexus_ml.service.views.reports import MAX_BUCKETS
from nexus_ml.storage.records import PredictionRecord, new_id

M = "/api/v1/monitoring"
# A window start that is no multiple of any step below: buckets must snap back to the epoch.
SINCE = datetime(2026, 3, 4, 10, 7, 30, tzinfo=UTC)
UNTIL = SINCE + timedelta(minutes=30)
# The window the answers cover: [since, until) widened to whole minutes.
ALIGNED_SINCE = datetime(2026, 3, 4, 10, 7, tzinfo=UTC)
ALIGNED_UNTIL = datetime(2026, 3, 4, 10, 38, tzinfo=UTC)


def _record(model: str, at: datetime) -> PredictionRecord:
    return PredictionRecord(
        new_id(), model, "v1", at, {}, "benign", 0.9, {"benign": 0.9}, latency_seconds=0.01
    )


def _store(client: TestClient, *records: PredictionRecord) -> None:
    client.app.state.service.store.insert_predictions(records)  # type: ignore[attr-defined]


def _get(client: TestClient, path: str, **params: Any) -> Any:
    r = client.get(M + path, params=params, headers=auth("monitor"))
    assert r.status_code == 200, r.text
    return r.json()


def _window(**extra: Any) -> dict[str, Any]:
    return {"since": SINCE.isoformat(), "until": UNTIL.isoformat(), **extra}


@pytest.fixture
def stored(client: TestClient) -> TestClient:
    """diagnostic: one just before the aligned window, one at the asked start, two inside, one
    at the aligned (excluded) end; diabetes_risk: one inside."""
    second = timedelta(microseconds=1)
    _store(
        client,
        _record("diagnostic", ALIGNED_SINCE - second),
        _record("diagnostic", SINCE),
        _record("diagnostic", SINCE + timedelta(minutes=1)),
        _record("diagnostic", UNTIL - second),
        _record("diagnostic", ALIGNED_UNTIL),
        _record("diabetes_risk", SINCE + timedelta(minutes=12)),
    )
    return client


def test_the_timeline_counts_the_window_half_open_in_epoch_aligned_buckets(
    stored: TestClient,
) -> None:
    body = _get(stored, "/metrics/predictions/timeline", **_window(step_seconds=600))
    # 10:07:30 snaps back to 10:00; 10:37:30 needs a fourth bucket starting at 10:30.
    first = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
    assert [datetime.fromisoformat(b) for b in body["buckets"]] == [
        first + timedelta(minutes=10 * i) for i in range(4)
    ]
    assert body["step_seconds"] == 600
    assert body["series"] == {"diabetes_risk": [0, 1, 0, 0], "diagnostic": [2, 0, 0, 1]}
    assert body["window"]["since"] == ALIGNED_SINCE.isoformat().replace("+00:00", "Z")
    assert body["window"]["until"] == ALIGNED_UNTIL.isoformat().replace("+00:00", "Z")


def test_the_timeline_of_one_model_counts_only_that_model(stored: TestClient) -> None:
    body = _get(
        stored, "/metrics/predictions/timeline", **_window(step_seconds=600, model="diagnostic")
    )
    assert body["series"] == {"diagnostic": [2, 0, 0, 1]}


def test_the_timeline_is_refused_past_its_bucket_limit_not_at_it(client: TestClient) -> None:
    # An aligned window of exactly MAX_BUCKETS steps is answered; one step more is a 422.
    since = datetime(2026, 3, 4, tzinfo=UTC)
    for n, status in ((MAX_BUCKETS, 200), (MAX_BUCKETS + 1, 422)):
        until = since + timedelta(seconds=60 * n)
        params = {"since": since.isoformat(), "until": until.isoformat(), "step_seconds": 60}
        r = client.get(M + "/metrics/predictions/timeline", params=params, headers=auth("monitor"))
        assert r.status_code == status, (n, r.text)
        if status == 200:
            assert len(r.json()["buckets"]) == MAX_BUCKETS
        else:
            assert r.json()["field"] == "step_seconds"
            assert r.json()["detail"] == (
                f"step_seconds: the window would need {n} buckets (at most {MAX_BUCKETS})"
            )


def test_the_report_counts_the_models_predictions_inside_the_window(stored: TestClient) -> None:
    body = _get(stored, "/reports/summary", **_window())
    by_model = {m["model"]: m["predictions"] for m in body["models"]}
    assert by_model == {"diagnostic": 3, "diabetes_risk": 1}
    assert body["predictions_total"] == 4
    one = _get(stored, "/reports/summary", **_window(model="diabetes_risk"))
    assert [(m["model"], m["predictions"]) for m in one["models"]] == [("diabetes_risk", 1)]
    assert one["predictions_total"] == 1


def test_availability_is_counted_since_the_service_started_in_utc(client: TestClient) -> None:
    started = client.app.state.service.lifecycle.started_at  # type: ignore[attr-defined]
    since = _get(client, "/reports/summary")["availability"]["since"]
    parsed = datetime.fromisoformat(since)
    assert parsed.utcoffset() == timedelta(0)  # UTC, whatever the server's zone
    assert parsed.timestamp() == pytest.approx(started, abs=1e-6)
    assert started <= time.time()


def test_buckets_are_aligned_to_the_unix_epoch_for_any_step(stored: TestClient) -> None:
    # 420 s divides neither an hour nor a day: only the epoch itself gives this alignment.
    body = _get(stored, "/metrics/predictions/timeline", **_window(step_seconds=420))
    first = datetime.fromisoformat(body["buckets"][0])
    assert first.timestamp() % 420 == 0
    assert first <= SINCE < first + timedelta(seconds=420)
    assert sum(body["series"]["diagnostic"]) == 3


def test_a_step_of_no_whole_minutes_is_refused(stored: TestClient) -> None:
    # The aggregates hold minutes: an 11-second bucket could not be counted exactly.
    r = stored.get(
        M + "/metrics/predictions/timeline",
        params=_window(step_seconds=11),
        headers=auth("monitor"),
    )
    assert r.status_code == 422 and r.json()["field"] == "step_seconds"
    assert r.json()["detail"] == "step_seconds: must be a whole number of minutes (60, 120, ...)"


def test_predictions_of_a_model_no_longer_loaded_still_count_in_the_timeline(
    client: TestClient,
) -> None:
    _store(client, _record("retired", SINCE + timedelta(minutes=11)))
    body = _get(client, "/metrics/predictions/timeline", **_window(step_seconds=600))
    assert body["series"]["retired"] == [0, 1, 0, 0]
    assert body["series"]["diagnostic"] == [0, 0, 0, 0]


def test_the_report_counts_errors_by_component_and_active_alerts_by_state(
    client: TestClient,
) -> None:
    service = client.app.state.service  # type: ignore[attr-defined]
    service.metrics.errors_total.labels("database", "OperationalError").inc(2)
    service.metrics.errors_total.labels("api", "RuntimeError").inc()
    # Wait for the start-up evaluation (a fresh service has no traffic: LowPredictionVolume is
    # pending), so that it cannot overwrite the alerts set below.
    deadline = time.monotonic() + 30
    while not service.alerts.active:
        assert time.monotonic() < deadline, "no start-up alert evaluation"
        time.sleep(0.01)
    service.alerts.active = [
        active_alert("firing", "HighCPUUsage"),
        active_alert("pending", "HighDiskUsage"),
        active_alert("pending", "HighDiskUsage"),
    ]
    body = _get(client, "/reports/summary")
    assert body["errors"]["component:database"] == 2
    assert body["errors"]["component:api"] == 1
    assert body["alerts"] == {"firing": 1, "pending": 2}
    assert body["alert_names"] == ["HighCPUUsage", "HighDiskUsage"]
