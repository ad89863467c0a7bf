"""GET /monitoring/anomalies: the six bands in-process, over the stored per-minute aggregates.

An injected shift in the stored predictions (three times the volume at a lower confidence, half
of it another class) is reported as anomalous and firing; a model whose series stays steady
is not. Likewise for the requests (three times the rate, a fifth of them 5xx, fifty times
slower) against a steady service. The request counts stored are exactly what the service's
own request metrics counted."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from tests.helpers import auth

from nexus_ml.monitoring.request_tally import LATENCY_LABELS
from nexus_ml.service.request_counts import SETTLE_SECONDS
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


def _readings(client: TestClient) -> dict[tuple[str | None, str, str | None], dict[str, Any]]:
    r = client.get(M + "/anomalies", headers=auth("monitor"))
    assert r.status_code == 200, r.text
    return {(x["model"], x["signal"], x["predicted_class"]): x for x in r.json()["readings"]}


def test_a_shift_in_the_stored_aggregates_is_reported_and_a_steady_series_is_not(
    client: TestClient,
) -> None:
    # The minute under way is not scored, nor one not yet settled: the last is end - 1 (or end,
    # end + 1 if minutes pass before the report: the injected minutes go on to end + 1).
    end = floor_to(utcnow() - timedelta(seconds=SETTLE_SECONDS), MINUTE)
    store = client.app.state.service.store  # type: ignore[attr-defined]
    store.insert_predictions(
        _records("diagnostic", 10, range(SHIFTED + 1, HISTORY), end, shifted=False)
        + _records("diagnostic", 30, range(-1, SHIFTED + 1), end, shifted=True)
        + _records("diabetes_risk", 10, range(-1, HISTORY), end, shifted=False)
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


def test_no_stored_predictions_no_model_readings(client: TestClient) -> None:
    assert {model for model, _, _ in _readings(client)} <= {None}


def _request_minutes(per_minute: int, minutes: range, end: Any, *, shifted: bool) -> dict:
    errors = per_minute // 5 if shifted else 0
    return {
        end - timedelta(minutes=m): {
            ("status", "2xx"): per_minute - errors,
            **({("status", "5xx"): errors} if errors else {}),
            ("latency", "0.5" if shifted else "0.01"): per_minute,
        }
        for m in minutes
    }


def _request_readings(client: TestClient) -> dict[str, dict[str, Any]]:
    readings = _readings(client)
    return {signal: v for (model, signal, _), v in readings.items() if model is None}


def test_a_shift_in_the_stored_requests_is_reported(client: TestClient) -> None:
    end = floor_to(utcnow() - timedelta(seconds=SETTLE_SECONDS), MINUTE)
    store = client.app.state.service.store  # type: ignore[attr-defined]
    store.add_request_counts(_request_minutes(100, range(SHIFTED + 1, HISTORY), end, shifted=False))
    store.add_request_counts(_request_minutes(300, range(-1, SHIFTED + 1), end, shifted=True))
    readings = _request_readings(client)
    assert set(readings) == {"request_rate", "error_ratio", "latency_p95"}
    for signal, v in readings.items():
        assert v["anomalous"] and v["firing"], (signal, v)
        assert all(b["score"] > 5 for b in v["baselines"]), v  # each is "up" (rate: "both")
    # The test's own requests (counted and flushed by the service) may reach the minutes scored
    # on a slow run: a few in 1,500.
    assert readings["request_rate"]["value"] == pytest.approx(300 * 5 / 300, abs=0.05)
    assert readings["error_ratio"]["value"] == pytest.approx(0.2, abs=0.002)
    # histogram_quantile of the 5 minutes' buckets: everything in (0.25, 0.5].
    assert readings["latency_p95"]["value"] == pytest.approx(0.25 + 0.25 * 0.95, rel=0.01)


def test_steady_requests_are_not_anomalous(client: TestClient) -> None:
    end = floor_to(utcnow() - timedelta(seconds=SETTLE_SECONDS), MINUTE)
    store = client.app.state.service.store  # type: ignore[attr-defined]
    store.add_request_counts(_request_minutes(100, range(-1, HISTORY), end, shifted=False))
    readings = _request_readings(client)
    assert set(readings) == {"request_rate", "error_ratio", "latency_p95"}
    for v in readings.values():
        assert not v["anomalous"] and not v["firing"], v
    assert readings["error_ratio"]["value"] == 0
    assert readings["latency_p95"]["value"] == pytest.approx(0.005 + 0.005 * 0.95, rel=0.01)


def test_the_stored_request_counts_are_what_was_served(
    client: TestClient, registry: CollectorRegistry
) -> None:
    service = client.app.state.service  # type: ignore[attr-defined]
    features = {"age": 59, "sex": 2, "bmi": 32.1, "bp": 101, "s1": 157}
    features |= {"s2": 93.2, "s3": 38, "s4": 4, "s5": 4.8598, "s6": 87}
    for _ in range(3):
        r = client.post(
            "/api/v1/models/diabetes_risk/predict",
            json={"features": features},
            headers=auth("predict"),
        )
        assert r.status_code == 200, r.text
    assert client.get("/api/v1/models").status_code == 401
    assert client.get("/no/such/path").status_code == 404
    assert client.get("/health").status_code == 200
    client.portal.call(service.request_counts.flush)  # type: ignore[union-attr]
    stored: dict[tuple[str, str], int] = {}
    start = floor_to(utcnow(), MINUTE) - timedelta(minutes=5)
    minutes = service.store.request_minutes([(start, start + timedelta(minutes=10))])
    for counts in minutes.values():
        for key, n in counts.items():
            stored[key] = stored.get(key, 0) + n
    assert minutes
    served: dict[tuple[str, str], int] = {}
    cumulative: dict[tuple[str, str], dict[str, float]] = {}  # per (method, endpoint)
    for family in registry.collect():
        for s in family.samples:
            if s.name == "ml_api_requests_total":
                key = ("status", s.labels["status"][0] + "xx")
                served[key] = served.get(key, 0) + int(s.value)
            elif s.name == "ml_api_request_duration_seconds_bucket":
                series = (s.labels["method"], s.labels["endpoint"])
                cumulative.setdefault(series, {})[s.labels["le"]] = s.value
    assert {k: v for k, v in stored.items() if k[0] == "status"} == served
    assert served[("status", "4xx")] == 2 and served[("status", "2xx")] == 4
    latency: dict[str, int] = {}
    for by_le in cumulative.values():
        previous = 0.0
        for le in LATENCY_LABELS:  # each bucket's own count: the step from the bound below
            latency[le] = latency.get(le, 0) + int(by_le[le] - previous)
            previous = by_le[le]
    assert {k[1]: v for k, v in stored.items() if k[0] == "latency"} == {
        le: n for le, n in latency.items() if n
    }


# -- the band settings are thresholds (PUT /config/thresholds) ---------------------------------

T = M + "/config/thresholds"


def test_changed_band_thresholds_reach_the_in_process_evaluation(client: TestClient) -> None:
    end = floor_to(utcnow() - timedelta(seconds=SETTLE_SECONDS), MINUTE)
    store = client.app.state.service.store  # type: ignore[attr-defined]
    store.add_request_counts(_request_minutes(100, range(SHIFTED + 1, HISTORY), end, shifted=False))
    store.add_request_counts(_request_minutes(300, range(-1, SHIFTED + 1), end, shifted=True))
    assert _request_readings(client)["request_rate"]["firing"]
    r = client.put(
        T,
        json={"anomaly_k": 500, "anomaly_seasons": 2, "anomaly_season": "12h"},
        headers=auth("admin"),
    )
    assert r.status_code == 200, r.text
    report = client.get(M + "/anomalies", headers=auth("monitor")).json()
    assert report["k"] == 500
    readings = {x["signal"]: x for x in report["readings"] if x["model"] is None}
    rate = readings["request_rate"]
    assert [b["baseline"] for b in rate["baselines"]] == ["12h", "1d"]  # the rules' labels
    # Three times the rate is far inside 500 robust standard deviations.
    assert not rate["anomalous"] and not rate["firing"], rate


def test_invalid_band_thresholds_are_refused_and_change_nothing(client: TestClient) -> None:
    before = client.get(M + "/anomalies", headers=auth("monitor")).json()
    rows = {t["key"]: t for t in client.get(T, headers=auth("monitor")).json()["thresholds"]}
    anomaly_alerts = {
        "RequestRateAnomaly",
        "ErrorRatioAnomaly",
        "PredictionVolumeAnomaly",
        "LatencyAnomaly",
        "ConfidenceAnomaly",
        "ClassShareAnomaly",
    }
    for key in (k for k in rows if k.startswith("anomaly_")):
        assert {a["name"] for a in rows[key]["alerts"]} == anomaly_alerts, rows[key]
        assert rows[key]["severity"] == "warning"
    for bad, field, words in (
        ({"anomaly_window": "90s"}, "anomaly_window", "whole number of minutes"),
        ({"anomaly_window": "3m"}, "anomaly_window", "at least 4m"),
        ({"anomaly_season": "30m"}, "anomaly_season", "longer than anomaly_window"),
        ({"anomaly_seasons": 9}, "anomaly_seasons", "at most 5"),
        ({"anomaly_seasons": 1.5}, "anomaly_seasons", "multiple of 1"),
        ({"anomaly_k": 0}, "anomaly_k", "above 0"),
        ({"anomaly_for": "-1m"}, "anomaly_for", "not a duration"),
        ({"anomaly_keep_firing_for": "30s"}, "anomaly_keep_firing_for", "whole number"),
        ({"anomaly_k": 3, "anomaly_window": "61s"}, "anomaly_window", "whole number"),
    ):
        r = client.put(T, json=bad, headers=auth("admin"))
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["field"] == field, (bad, r.json())
        assert words in r.text, (bad, r.text)
    shown = {t["key"]: t for t in client.get(T, headers=auth("monitor")).json()["thresholds"]}
    assert not [k for k, t in shown.items() if t["overridden"]]  # nothing stored
    assert shown["anomaly_k"]["value"] == 5 and shown["anomaly_window"]["value"] == 3600
    after = client.get(M + "/anomalies", headers=auth("monitor")).json()
    assert after["k"] == before["k"] == 5  # nothing applied


def test_the_last_requests_are_stored_at_shutdown(
    make_settings: Any, registry: CollectorRegistry
) -> None:
    from nexus_ml.api.app import create_app
    from nexus_ml.storage import Store, make_engine

    settings = make_settings()
    with TestClient(create_app(settings, registry=registry)) as c:
        for _ in range(7):
            assert c.get("/health").status_code == 200
        assert c.get("/no/such/path").status_code == 404
    # Stopped: what the periodic flush had not stored yet was flushed by the shutdown.
    engine = make_engine(settings.resolved_database_url)
    try:
        start = floor_to(utcnow(), MINUTE) - timedelta(minutes=5)
        minutes = Store(engine).request_minutes([(start, start + timedelta(minutes=10))])
    finally:
        engine.dispose()
    status: dict[str, int] = {}
    for counts in minutes.values():
        for (kind, key), n in counts.items():
            if kind == "status":
                status[key] = status.get(key, 0) + n
    assert status == {"2xx": 7, "4xx": 1}
