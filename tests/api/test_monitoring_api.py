"""The monitoring API, on SQLite and PostgreSQL: schemas, auth, numbers against numpy."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pydantic import BaseModel
from tests.helpers import auth

from nexus_ml.api.app import create_app
from nexus_ml.ml.datasets import load_dataset
from nexus_ml.service.views import ops_results as mo
from nexus_ml.service.views import results as ms
from nexus_ml.storage import bins
from nexus_ml.storage.db import make_engine
from nexus_ml.storage.repositories import Store

M = "/api/v1/monitoring"
ENDPOINTS: dict[str, type[BaseModel]] = {
    "/health": mo.MonitoringHealth,
    "/alerts": mo.AlertsResponse,
    "/status": mo.ServiceStatus,
    "/metrics/summary": mo.MetricsSummary,
    "/metrics/predictions": ms.PredictionMetrics,
    "/metrics/predictions/timeline": ms.PredictionTimeline,
    "/metrics/training": ms.TrainingMetrics,
    "/performance/system": ms.SystemPerformance,
    "/performance/models": ms.ModelsPerformance,
    "/data-quality/overview": ms.DataQualityOverview,
    "/config/thresholds": mo.ThresholdsResponse,
    "/reports/summary": mo.ReportSummary,
}
NEEDS_DB = [
    p
    for p in ENDPOINTS
    if p not in ("/health", "/alerts", "/status", "/metrics/summary", "/performance/system")
]


def rows(name: str, n: int, start: int = 0) -> list[dict[str, float]]:
    data = load_dataset(name)
    return [
        dict(zip(data.feature_names, map(float, data.X[i]), strict=True))
        for i in range(start, start + n)
    ]


def numbers_in(value: Any) -> Iterator[float]:
    """Every number anywhere in a JSON value."""
    if isinstance(value, dict):
        for v in value.values():
            yield from numbers_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from numbers_in(v)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield float(value)


def service_of(client: TestClient) -> Any:
    return client.app.state.service  # type: ignore[attr-defined]


def populate(client: TestClient) -> list[dict[str, Any]]:
    """Single and batch predictions on both models, flushed to the database."""
    preds = []
    for i in range(12):  # single calls: each has its own latency
        r = client.post(
            "/api/v1/models/diagnostic/predict",
            json={"features": rows("diagnostic", 1, i)[0]},
            headers=auth("predict"),
        )
        assert r.status_code == 200, r.text
        preds.append(r.json())
    r = client.post(
        "/api/v1/models/diabetes_risk/predict",
        json={"instances": rows("diabetes_risk", 25)},
        headers=auth("predict"),
    )
    assert r.status_code == 200, r.text
    preds += [{**p, "model": "diabetes_risk"} for p in r.json()["predictions"]]
    client.portal.call(service_of(client).writer.flush)  # type: ignore[union-attr]
    return preds


def test_every_endpoint_answers_its_documented_schema(client: TestClient) -> None:
    populate(client)
    spec = client.get("/openapi.json").json()
    for path, model in ENDPOINTS.items():
        r = client.get(M + path, headers=auth("monitor"))
        assert r.status_code == 200, (path, r.text)
        model.model_validate(r.json())
        op = spec["paths"][f"/api/v1/monitoring{path}"]["get"]
        ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/" + model.__name__), path
        assert op.get("description") and op.get("summary"), path
    put = spec["paths"]["/api/v1/monitoring/config/thresholds"]["put"]
    assert put["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ThresholdsResponse"
    )


def test_auth_401_403_200(shared_client: TestClient) -> None:
    for path in ENDPOINTS:
        assert shared_client.get(M + path).status_code == 401, path
        assert shared_client.get(M + path, headers=auth("predict")).status_code == 403, path
        assert shared_client.get(M + path, headers=auth("monitor")).status_code == 200, path
        assert shared_client.get(M + path, headers=auth("admin")).status_code == 200, path


def _within(got: dict[str, Any], values: Any) -> None:
    """Latency percentiles from the aggregates' bins: within the stated relative bound."""
    assert got["method"] == "bins" and got["relative_error"] == bins.ALPHA
    want = np.percentile(np.asarray(values), [50, 95, 99], method="linear")
    for q, exact in zip(("p50", "p95", "p99"), want, strict=True):
        assert abs(got[q] - exact) <= bins.ALPHA * exact, (q, got[q], exact)


def test_prediction_metrics_equal_numpy_on_stored_data(client: TestClient) -> None:
    populate(client)
    stored = service_of(client).store.prediction_stats()
    body = client.get(M + "/metrics/predictions?hours=1", headers=auth("monitor")).json()
    by_model = {m["model"]: m for m in body["models"]}
    assert body["total"] == sum(s.count for s in stored.values()) == 37
    for name, s in stored.items():
        got = by_model[name]
        assert got["count"] == s.count
        assert got["class_counts"] == s.class_counts
        lat = np.asarray(s.latencies)
        got_lat = got["latency_seconds"]
        _within(got_lat, lat)
        assert got_lat["max"] == float(lat.max())
        assert got_lat["mean"] == pytest.approx(float(lat.mean()), rel=1e-12)
        counts, edges = np.histogram(np.asarray(s.confidences), bins=20, range=(0.0, 1.0))
        assert got["confidence"]["histogram"]["counts"] == counts.tolist()
        assert got["confidence"]["histogram"]["edges"] == pytest.approx(edges.tolist())
        exact = float(np.percentile(s.confidences, 50, method="linear"))
        assert got["confidence"]["p50_absolute_error"] == bins.CONFIDENCE_ERROR
        assert abs(got["confidence"]["p50"] - exact) <= bins.CONFIDENCE_ERROR
    # Filtered by model; a window before the data is empty but lists the model.
    one = client.get(M + "/metrics/predictions?model=diagnostic", headers=auth("monitor")).json()
    assert [m["model"] for m in one["models"]] == ["diagnostic"] and one["total"] == 12
    old = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    r = client.get(M + "/metrics/predictions", params={"until": old}, headers=auth("monitor"))
    assert r.json()["total"] == 0 and r.json()["models"][0]["latency_seconds"]["p50"] is None


def test_report_and_performance_percentiles_equal_numpy(client: TestClient) -> None:
    preds = populate(client)
    service = service_of(client)
    for p in preds[:6]:
        r = client.post(
            f"/api/v1/predictions/{p['id']}/feedback",
            json={"actual": p["predicted_class"]},
            headers=auth("predict"),
        )
        assert r.status_code == 201
    stored = service.store.prediction_stats()
    every = np.asarray([x for s in stored.values() for x in s.latencies])
    report = client.get(M + "/reports/summary", headers=auth("monitor")).json()
    _within(report["latency_seconds"], every)
    assert report["predictions_total"] == 37
    diag = next(m for m in report["models"] if m["model"] == "diagnostic")
    assert diag["accuracy"] == {"value": 1.0, "n": 6}
    avail = report["availability"]
    assert avail["target"] == 0.999 and avail["value"] == 1.0 and avail["met"] is True
    assert "ml_api_requests_total" in avail["definition"]
    perf = client.get(M + "/performance/models", headers=auth("monitor")).json()
    d = next(m for m in perf["models"] if m["model"] == "diagnostic")
    _within(d["latency_seconds"], stored["diagnostic"].latencies)
    assert d["accuracy"] == {"value": 1.0, "n": 6}
    assert 0.9 < d["holdout_accuracy"] <= 1.0
    # LowModelAccuracy's limit per model: diagnostic keeps the floor, diabetes_risk (validated
    # below it) is held to its own baseline minus the tolerance.
    assert d["accuracy_limit"] == perf["accuracy_threshold"] == 0.8
    diabetes = next(m for m in perf["models"] if m["model"] == "diabetes_risk")
    validated = service_of(client).models.get("diabetes_risk").info.baseline.accuracy.value
    assert validated < 0.8
    assert diabetes["accuracy_limit"] == pytest.approx(validated - 0.1)


def test_timeline_counts_stored_predictions(client: TestClient) -> None:
    populate(client)
    body = client.get(M + "/metrics/predictions/timeline", headers=auth("monitor")).json()
    assert body["step_seconds"] == 60 and len(body["buckets"]) in (60, 61)
    assert {k: sum(v) for k, v in body["series"].items()} == {"diabetes_risk": 25, "diagnostic": 12}
    assert all(len(v) == len(body["buckets"]) for v in body["series"].values())


def test_quality_training_and_no_feature_values(client: TestClient) -> None:
    preds = populate(client)
    r = client.post(M + "/drift/run", headers=auth("admin"))
    assert r.status_code == 200 and r.json()["ran"]
    dq = client.get(M + "/data-quality/overview", headers=auth("monitor")).json()
    diag = next(m for m in dq["models"] if m["model"] == "diagnostic")
    assert diag["window_size"] == 12 and len(diag["features"]) == 30
    # 12 rows is below the minimum window: no feature's score is a decision.
    assert not diag["decided"] and not any(f["decided"] for f in diag["features"])
    assert diag["request_quality_score"] is not None
    perf = client.get(M + "/performance/models", headers=auth("monitor")).json()
    est = next(m for m in perf["models"] if m["model"] == "diagnostic")["estimated_accuracy"]
    assert est["n"] == 12 and 0 < est["value"] <= 1 and est["stderr"] is not None
    # No monitoring answer carries a feature value sent with a prediction.
    # (Integers and round numbers such as histogram edges or 0.4 are not evidence.)
    values = {v for p in rows("diagnostic", 12) for v in p.values() if len(repr(v)) > 5}
    for path in ENDPOINTS:
        answer = client.get(M + path, headers=auth("monitor")).json()
        leaked = values & set(numbers_in(answer))
        assert not leaked, (path, sorted(leaked)[:3])
    assert len(preds) == 37


def test_training_metrics_count_runs(client: TestClient) -> None:
    r = client.post("/api/v1/models/diabetes_risk/train", json={"seed": 1}, headers=auth("admin"))
    assert r.status_code == 202
    client.portal.call(service_of(client).trainer.wait_idle)  # type: ignore[union-attr]
    body = client.get(M + "/metrics/training", headers=auth("monitor")).json()
    assert body["total"] == 1 and body["by_status"]["succeeded"] == 1
    assert (
        len(body["per_day"]) in (7, 8)
        and sum(d["counts"]["succeeded"] for d in body["per_day"]) == 1
    )
    run = body["last_by_model"]["diabetes_risk"]
    assert run["duration_seconds"] > 0 and run["holdout_accuracy"] is not None
    assert body["durations"]["count"] == 1


def test_summary_counts_requests_and_predictions(client: TestClient) -> None:
    populate(client)
    body = client.get(M + "/metrics/summary", headers=auth("monitor")).json()
    assert body["predictions"] == {"diabetes_risk": 25, "diagnostic": 12}
    assert body["requests"]["by_class"]["2xx"] >= 13 and body["requests"]["availability"] == 1.0
    assert body["database"]["records_written"] == 37
    # End-to-end request time per route template (never a raw path), beside the model's own.
    latency = body["request_latency_seconds"]
    predict = latency["POST /api/v1/models/{name}/predict"]
    assert 0 < predict["p50"] <= predict["p95"] <= predict["p99"] and predict["mean"] > 0
    assert all("diabetes_risk" not in route and "diagnostic" not in route for route in latency)


def test_thresholds_get_put_validation_and_audit(client: TestClient) -> None:
    service = service_of(client)
    body = client.get(M + "/config/thresholds", headers=auth("monitor")).json()
    rows_ = {t["key"]: t for t in body["thresholds"]}
    assert (
        rows_["cpu_usage_high"]["unit"] == "percent"
        and rows_["cpu_usage_high"]["severity"] == "warning"
    )
    assert rows_["cpu_usage_critical"]["severity"] == "critical"
    assert rows_["availability_slo"]["severity"] == "critical"  # fast burn pages
    # A guard key lists the alerts it guards, not only a limit or a `for` key.
    assert [a["name"] for a in rows_["clinical_min_samples"]["alerts"]] == [
        "SensitivityDrop",
        "SubgroupPerformanceGap",
    ]
    assert [a["name"] for a in rows_["accuracy_min_samples"]["alerts"]] == ["LowModelAccuracy"]
    url = M + "/config/thresholds"
    assert client.put(url, json={"cpu_usage_high": 70}).status_code == 401
    assert client.put(url, json={"cpu_usage_high": 70}, headers=auth("monitor")).status_code == 403
    for bad, field in (
        ({"cpu_usage_high": 170}, "cpu_usage_high"),
        ({"nope": 1}, "nope"),
        ({"cpu_usage_high": True}, "cpu_usage_high"),
        ({"cpu_usage_high_for": "soon"}, "cpu_usage_high_for"),
        ({"cpu_usage_critical": 50}, "cpu_usage_critical"),  # below cpu_usage_high
        ({}, "body"),
        # Not finite, not whole seconds, not a histogram bucket (issue 10, defect 7).
        ({"cpu_usage_high_for": "inf"}, "cpu_usage_high_for"),
        ({"training_max_age": "Infinity"}, "training_max_age"),
        ({"cpu_usage_high_for": 0.5}, "cpu_usage_high_for"),
        ({"prediction_latency_high": "1e400"}, "prediction_latency_high"),
        ({"latency_slo_threshold": 0.3}, "latency_slo_threshold"),
        ({"cpu_usage_high": 70, "latency_slo_threshold": 0.75}, "latency_slo_threshold"),
    ):
        r = client.put(url, json=bad, headers=auth("admin"))
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["field"] == field, (bad, r.json())
    assert client.put(url, json=[1], headers=auth("admin")).status_code == 422
    for literal in ("Infinity", "-Infinity", "NaN", "1e999"):  # JSON extensions Python reads
        r = client.put(
            url,
            content=f'{{"service_down_for": {literal}}}',
            headers={**auth("admin"), "Content-Type": "application/json"},
        )
        assert r.status_code == 422 and r.json()["field"] == "service_down_for", r.text
    shown = {t["key"]: t for t in client.get(url, headers=auth("monitor")).json()["thresholds"]}
    assert not [k for k, t in shown.items() if t["overridden"]]  # nothing was stored
    assert [k for k, t in shown.items() if t["value"] is None] == ["memory_usage_high_bytes"]
    assert service.thresholds.current.cpu_usage_high == 80.0  # nothing applied
    assert service.store.list_audit(action="update_thresholds") == []
    r = client.put(
        url, json={"cpu_usage_high": 70, "cpu_usage_high_for": "10m"}, headers=auth("admin")
    )
    assert r.status_code == 200, r.text
    assert r.json()["changed"] == ["cpu_usage_high", "cpu_usage_high_for"]
    after = {t["key"]: t for t in r.json()["thresholds"]}
    assert after["cpu_usage_high"]["value"] == 70 and after["cpu_usage_high"]["overridden"]
    assert after["cpu_usage_high_for"]["value"] == 600
    assert (
        service.thresholds.current.cpu_usage_high == 70
        and service.alerts.evaluator.thresholds.cpu_usage_high == 70
    )
    overrides = service.store.threshold_overrides()
    assert overrides["cpu_usage_high"].value == 70 and overrides["cpu_usage_high_for"].value == 600
    (entry,) = service.store.list_audit(action="update_thresholds")
    assert entry.actor == after["cpu_usage_high"]["updated_by"] and len(entry.actor) == 12
    assert entry.details == {
        "changes": {
            "cpu_usage_high": {"old": 80.0, "new": 70.0},
            "cpu_usage_high_for": {"old": 300.0, "new": 600.0},
        }
    }


def test_stored_overrides_that_no_longer_validate_are_refused_alone(client: TestClient) -> None:
    service = service_of(client)
    store = service.store
    store.set_threshold_override("cpu_usage_high", 70, "older-vers")
    store.set_threshold_override("cpu_usage_high_for", float("inf"), "older-vers")
    store.set_threshold_override("latency_slo_threshold", 0.3, "older-vers")
    service.thresholds.refresh()
    assert service.thresholds.current.cpu_usage_high == 70  # the valid one applies
    assert service.thresholds.current.cpu_usage_high_for == 300  # the others keep their defaults
    assert service.thresholds.current.latency_slo_threshold == 1.0
    assert service.alerts.evaluator.thresholds == service.thresholds.current


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2024-13-01T00:00:00Z"}, "until"),
        ({"hours": "0"}, "hours"),
        ({"hours": "-1"}, "hours"),
        ({"hours": "abc"}, "hours"),
        ({"hours": "100000"}, "hours"),
        ({"hours": "1", "since": "2024-01-01T00:00:00Z"}, "hours"),
        ({"since": "2024-01-02T00:00:00Z", "until": "2024-01-01T00:00:00Z"}, "until"),
        ({"model": "nope"}, "model"),
        ({"model": "../etc"}, "model"),
    ],
)
def test_bad_query_parameters_are_422_with_field(
    shared_client: TestClient, query: dict[str, str], field: str
) -> None:
    for path in ("/metrics/predictions", "/reports/summary", "/performance/models"):
        r = shared_client.get(M + path, params=query, headers=auth("monitor"))
        assert r.status_code == 422, (path, query, r.text)
        assert r.json()["field"] == field, (path, r.json())


def test_timeline_bucket_limit(shared_client: TestClient) -> None:
    r = shared_client.get(
        M + "/metrics/predictions/timeline",
        params={"hours": 100, "step_seconds": 10},
        headers=auth("monitor"),
    )
    assert r.status_code == 422 and r.json()["field"] == "step_seconds"
    r = shared_client.get(
        M + "/metrics/predictions/timeline", params={"step_seconds": 5}, headers=auth("monitor")
    )
    assert r.status_code == 422 and r.json()["field"] == "step_seconds"


def test_database_unreachable_is_503_never_500(client: TestClient) -> None:
    service = service_of(client)
    real = service.db.store
    # Port 9 (discard) on localhost: connection refused at once.
    service.db.store = Store(make_engine("postgresql+psycopg://nobody@127.0.0.1:9/none"))
    try:
        for path in NEEDS_DB:
            r = client.get(M + path, headers=auth("monitor"))
            assert r.status_code == 503, (path, r.text)
            assert r.json() == {"detail": "database unavailable: retry later", "field": None}
        r = client.put(M + "/config/thresholds", json={"cpu_usage_high": 70}, headers=auth("admin"))
        assert r.status_code == 503 and service.thresholds.current.cpu_usage_high == 80.0
        health = client.get(M + "/health", headers=auth("monitor"))
        assert health.status_code == 200 and health.json()["database"]["status"] == "unreachable"
        assert (
            client.get(M + "/status", headers=auth("monitor")).json()["database"]["status"]
            == "unreachable"
        )
    finally:
        service.db.store.engine.dispose()
        service.db.store = real


class _FakeAlertmanager(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(
            [
                {
                    "fingerprint": "abc",
                    "labels": {"alertname": "HighCPUUsage", "severity": "warning"},
                    "annotations": {"summary": "CPU high"},
                    "status": {"state": "active"},
                    "startsAt": "2025-01-01T00:00:00Z",
                    "endsAt": "2025-01-01T01:00:00Z",
                }
            ]
        ).encode()
        self.send_response(200 if self.path.startswith("/api/v2/alerts") else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_alertmanager() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _FakeAlertmanager)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_alerts_include_alertmanager_or_say_unreachable(
    make_settings: Any, registry: Any, fake_alertmanager: str
) -> None:
    with TestClient(
        create_app(make_settings(alertmanager_url=fake_alertmanager), registry=registry)
    ) as c:
        am = c.get(M + "/alerts", headers=auth("monitor")).json()["alertmanager"]
        assert am["status"] == "ok" and am["alerts"][0]["labels"]["alertname"] == "HighCPUUsage"
        assert am["alerts"][0]["state"] == "active"
    down = make_settings(alertmanager_url="http://127.0.0.1:9")
    with TestClient(create_app(down, registry=CollectorRegistry())) as c:
        am = c.get(M + "/alerts", headers=auth("monitor")).json()["alertmanager"]
        assert am["status"] == "unreachable" and am["alerts"] == [] and am["error"]


def test_alerts_default_not_configured(shared_client: TestClient) -> None:
    body = shared_client.get(M + "/alerts", headers=auth("monitor")).json()
    assert body["alertmanager"] == {"status": "not_configured", "error": None, "alerts": []}


def test_dashboard_page_and_static_headers(shared_client: TestClient) -> None:
    for path in (
        "/dashboard",
        "/dashboard/static/dashboard.js",
        "/dashboard/static/vendor/chartjs/chart.umd.min.js",
    ):
        r = shared_client.get(path)
        assert r.status_code == 200, path
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "'unsafe-inline'" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
    assert shared_client.get("/dashboard/static/vendor/chartjs/LICENSE.md").status_code == 200
    for bad in (
        "/dashboard/static/../routes/dashboard.py",
        "/dashboard/static/%2e%2e/app.py",
        "/dashboard/static/nope.js",
        "/dashboard/static/a%00.js",
        "/dashboard/static/" + "x" * 5000 + ".js",
    ):
        assert shared_client.get(bad).status_code == 404, bad
