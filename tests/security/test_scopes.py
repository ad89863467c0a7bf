"""Every route of the app, called with every scope: who gets in, who gets 401 or 403.

Routes are discovered from the app's route tree (routers included), never listed by hand;
the table below says which scope each one needs. A route the table lacks, or an entry for a
route that no longer exists, fails the test, so a new endpoint cannot ship without a decision
about who may call it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.helpers import KEYS, auth
from tests.security._support import Endpoint, concrete_path, endpoints, sqlite_app

from nexus_ml.api.middleware import route_templates

PUBLIC = "public"
# (method, path template) -> the scope it needs. admin may do everything; predict and
# monitor are disjoint duties (nexus_ml.api.auth._GRANTS).
REQUIRED_SCOPE: dict[tuple[str, str], str] = {
    # Liveness, readiness, health and metrics are read by orchestrators and Prometheus,
    # which carry no API key. /metrics can be closed with ML_METRICS_TOKEN (test_headers).
    ("GET", "/health/live"): PUBLIC,
    ("GET", "/health/ready"): PUBLIC,
    ("GET", "/health"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    # API documentation: the schema only, no data.
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    # The dashboard page and its files hold no data; the page asks for a monitor key.
    ("GET", "/dashboard"): PUBLIC,
    ("GET", "/dashboard/"): PUBLIC,
    ("GET", "/dashboard/static/{path}"): PUBLIC,
    # Serving
    ("GET", "/api/v1/models"): "predict",
    ("GET", "/api/v1/models/{name}"): "predict",
    ("POST", "/api/v1/models/{name}/predict"): "predict",
    # Champion vs shadow challenger: a monitoring read of aggregates.
    ("GET", "/api/v1/models/{name}/comparison"): "monitor",
    ("POST", "/api/v1/predictions/{prediction_id}/feedback"): "predict",
    # Changing the service
    ("POST", "/api/v1/models/{name}/train"): "admin",
    ("GET", "/api/v1/training/runs/{run_id}"): "admin",
    ("POST", "/api/v1/models/{name}/versions/{version}/promote"): "admin",
    ("POST", "/api/v1/models/{name}/rollback"): "admin",
    ("POST", "/api/v1/models/{name}/versions/{version}/shadow"): "admin",
    ("DELETE", "/api/v1/models/{name}/shadow"): "admin",
    ("GET", "/api/v1/models/{name}/versions"): "monitor",
    ("GET", "/api/v1/models/{name}/promotion-reports"): "monitor",
    ("POST", "/api/v1/monitoring/drift/run"): "admin",
    ("PUT", "/api/v1/monitoring/config/thresholds"): "admin",
    # Who did what, when: not a monitoring read (docs/security.md, "Audit").
    ("GET", "/api/v1/monitoring/audit"): "admin",
    # Monitoring reads
    ("GET", "/api/v1/monitoring/health"): "monitor",
    ("GET", "/api/v1/monitoring/alerts"): "monitor",
    ("GET", "/api/v1/monitoring/status"): "monitor",
    ("GET", "/api/v1/monitoring/metrics/summary"): "monitor",
    ("GET", "/api/v1/monitoring/metrics/predictions"): "monitor",
    ("GET", "/api/v1/monitoring/metrics/predictions/timeline"): "monitor",
    ("GET", "/api/v1/monitoring/metrics/training"): "monitor",
    ("GET", "/api/v1/monitoring/performance/system"): "monitor",
    ("GET", "/api/v1/monitoring/performance/models"): "monitor",
    ("GET", "/api/v1/monitoring/performance/clinical"): "monitor",
    ("GET", "/api/v1/monitoring/data-quality/overview"): "monitor",
    ("GET", "/api/v1/monitoring/config/thresholds"): "monitor",
    ("GET", "/api/v1/monitoring/reports/summary"): "monitor",
    ("GET", "/api/v1/monitoring/anomalies"): "monitor",
}
GRANTS = {
    "admin": {"admin", "monitor", "predict"},
    "monitor": {"monitor"},
    "predict": {"predict"},
}
CALLERS = ("none", "wrong", "predict", "monitor", "admin")
# Path parameters: names that exist where that is cheap, and a model that does not exist
# for training (an admin call must not start a real run here).
PATH_VALUES = {
    "name": "diagnostic",
    "prediction_id": "0" * 32,
    "run_id": "0" * 32,
    "path": "dashboard.css",
    # A version that does not exist: an admin call must not change the champion here.
    "version": "20990101T000000Z-0123abcd",
}
TRAIN = ("POST", "/api/v1/models/{name}/train")


@pytest.fixture
def app(bundled_models: Path, tmp_path: Path) -> FastAPI:
    return sqlite_app(bundled_models, tmp_path)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, follow_redirects=False) as c:
        yield c


def _headers(caller: str) -> dict[str, str]:
    if caller == "none":
        return {}
    if caller == "wrong":
        return {"Authorization": "Bearer " + "x" * 32}
    return auth(caller)


def _call(client: TestClient, endpoint: Endpoint, caller: str) -> Any:
    values = dict(PATH_VALUES)
    if (endpoint.method, endpoint.path) == TRAIN:
        values["name"] = "no-such-model"
    url = concrete_path(endpoint.path, values)
    kwargs: dict[str, Any] = {"headers": _headers(caller)}
    if endpoint.method in ("POST", "PUT", "PATCH"):
        kwargs["json"] = {}
    return client.request(endpoint.method, url, **kwargs)


def test_scope_table_matches_the_routes(app: FastAPI) -> None:
    for route, template in route_templates(app.routes):
        # A mount or websocket would escape the method-by-method table below.
        assert getattr(route, "methods", None), f"{template}: no HTTP methods (mount?)"
    found = {(e.method, e.path) for e in endpoints(app)}
    missing = sorted(found - REQUIRED_SCOPE.keys())
    stale = sorted(REQUIRED_SCOPE.keys() - found)
    assert not missing, f"routes without a scope decision in REQUIRED_SCOPE: {missing}"
    assert not stale, f"REQUIRED_SCOPE lists routes that no longer exist: {stale}"


def test_every_route_with_every_caller(client: TestClient, app: FastAPI) -> None:
    problems: list[str] = []
    checked = 0
    for endpoint in endpoints(app):
        needed = REQUIRED_SCOPE.get((endpoint.method, endpoint.path))
        if needed is None:
            continue  # reported by test_scope_table_matches_the_routes
        for caller in CALLERS:
            r = _call(client, endpoint, caller)
            checked += 1
            status = r.status_code
            if status >= 500:
                expected = "no 5xx"
            elif needed == PUBLIC or (caller in GRANTS and needed in GRANTS[caller]):
                expected = "not 401/403" if status in (401, 403) else ""
            elif caller in ("none", "wrong"):
                expected = "401" if status != 401 else ""
            else:
                expected = "403" if status != 403 else ""
            if expected:
                problems.append(f"{endpoint} as {caller}: got {status}, expected {expected}")
            elif status in (401, 403):
                # Refusals use the shared error shape and never say which keys exist.
                body = r.json()
                assert set(body) == {"detail", "field"}, body
                assert not any(k in r.text for k in KEYS.values()), r.text
                if status == 401:
                    assert r.headers.get("www-authenticate") == "Bearer"
    assert not problems, "\n".join(problems)
    assert checked >= 5 * 29


def test_x_api_key_header_is_equivalent_to_bearer(client: TestClient) -> None:
    url = "/api/v1/monitoring/status"
    assert client.get(url, headers={"X-API-Key": KEYS["monitor"]}).status_code == 200
    assert client.get(url, headers={"X-API-Key": KEYS["predict"]}).status_code == 403
    assert client.get(url, headers={"X-API-Key": "y" * 32}).status_code == 401


@pytest.mark.parametrize(
    "header",
    [
        f"Basic {KEYS['admin']}",  # right key, wrong scheme
        f"Bearer {KEYS['admin']}x",  # one character long
        f"Bearer {KEYS['admin'][:-1]}",  # one character short
        f"Bearer {KEYS['admin'].upper()}",  # keys are case-sensitive
        "Bearer ",
        "Bearer",
    ],
)
def test_near_miss_credentials_are_refused(client: TestClient, header: str) -> None:
    r = client.get("/api/v1/monitoring/status", headers={"Authorization": header})
    assert r.status_code == 401, (header, r.status_code, r.text)
