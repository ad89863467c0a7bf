"""Access control, health endpoints and /metrics."""

from __future__ import annotations

import os
import stat
from typing import Any

from fastapi.testclient import TestClient
from tests.helpers import KEYS, auth

from nexus_ml.api.app import create_app
from nexus_ml.api.auth import ensure_first_start_key
from nexus_ml.config import Settings

MODELS = "/api/v1/models"


def test_missing_wrong_and_insufficient_keys(client: TestClient) -> None:
    r = client.get(MODELS)
    assert r.status_code == 401 and "missing API key" in r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"
    r = client.get(MODELS, headers={"Authorization": "Bearer not-a-key"})
    assert r.status_code == 401 and r.json()["detail"] == "invalid API key"
    r = client.get(MODELS, headers=auth("monitor"))
    assert r.status_code == 403 and "needs 'predict'" in r.json()["detail"]
    r = client.post("/api/v1/models/diagnostic/train", headers=auth("predict"))
    assert r.status_code == 403
    assert client.get(MODELS, headers={"X-API-Key": KEYS["predict"]}).status_code == 200
    assert client.get(MODELS, headers=auth("admin")).status_code == 200


def test_first_start_key_is_generated_once_with_0600(tmp_path: Any) -> None:
    s = Settings(data_dir=tmp_path / "d", api_keys="")
    s1, key1 = ensure_first_start_key(s)
    assert key1 and s1.parsed_api_keys() == {key1: "admin"}
    mode = stat.S_IMODE(os.stat(tmp_path / "d" / "api_key").st_mode)
    assert mode == 0o600
    s2, key2 = ensure_first_start_key(s)
    assert key2 is None and s2.parsed_api_keys() == {key1: "admin"}


def test_no_keys_configured_means_nobody_gets_in(make_settings: Any, registry: Any) -> None:
    app = create_app(make_settings(api_keys=""), registry=registry)
    with TestClient(app) as c:
        assert c.get(MODELS, headers={"Authorization": "Bearer anything"}).status_code == 401


def test_health_live_ready_and_comprehensive(client: TestClient) -> None:
    assert client.get("/health/live").json() == {"status": "alive"}
    r = client.get("/health/ready")
    assert r.status_code == 200
    body = r.json()
    assert body["ready"] is True and body["status"] == "ok"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["models"]["loaded"] == ["diabetes_risk", "diagnostic"]
    full = client.get("/health").json()
    assert 0 <= full["checks"]["system"]["cpu_percent"] <= 100
    assert 0 < full["checks"]["system"]["memory_ratio"] < 1
    assert full["alerts"] == []


def test_not_ready_without_models(make_settings: Any, registry: Any, tmp_path: Any) -> None:
    empty = tmp_path / "empty-models"
    empty.mkdir()
    app = create_app(make_settings(model_path=empty), registry=registry)
    with TestClient(app) as c:
        r = c.get("/health/ready")
        assert r.status_code == 503
        assert r.json()["checks"]["models"]["status"] == "none_loaded"
        assert c.get("/health").status_code == 503


def test_database_down_is_degraded_not_unready(make_settings: Any, registry: Any) -> None:
    # A closed port: connection refused at once.
    s = make_settings(database_url="postgresql+psycopg://postgres@127.0.0.1:9/none")
    app = create_app(s, registry=registry)
    with TestClient(app) as c:
        r = c.get("/health/ready")
        assert r.status_code == 200
        assert r.json()["status"] == "degraded"
        assert r.json()["checks"]["database"]["status"] == "unreachable"


def test_metrics_text_openmetrics_and_token(make_settings: Any, registry: Any) -> None:
    app = create_app(make_settings(metrics_token="scrape-token-123456"), registry=registry)
    with TestClient(app) as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        r = c.get("/metrics", headers={"Authorization": "Bearer scrape-token-123456"})
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        assert "ml_model_info{" in r.text
        r = c.get(
            "/metrics",
            headers={
                "Authorization": "Bearer scrape-token-123456",
                "Accept": "application/openmetrics-text; version=1.0.0",
            },
        )
        assert r.headers["content-type"].startswith("application/openmetrics-text")
        assert r.text.rstrip().endswith("# EOF")


def test_cors_closed_by_default(client: TestClient) -> None:
    r = client.options(
        MODELS, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    )
    assert "access-control-allow-origin" not in r.headers


def test_cors_opens_only_to_the_configured_origins(make_settings: Any, registry: Any) -> None:
    app = create_app(make_settings(cors_origins="https://ward.example"), registry=registry)
    preflight = {"Access-Control-Request-Method": "GET"}
    with TestClient(app) as c:
        ok = c.options(MODELS, headers={"Origin": "https://ward.example", **preflight})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://ward.example"
        evil = c.options(MODELS, headers={"Origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in evil.headers
        get = c.get(MODELS, headers={"Origin": "https://evil.example", **auth("predict")})
        assert get.status_code == 200 and "access-control-allow-origin" not in get.headers


METRICS_TOKEN = "scrape-token-0123456789"


def test_bearer_scheme_is_case_insensitive_for_keys_and_metrics(
    make_settings: Any, registry: Any
) -> None:
    # One parser (auth.bearer_token) for the API keys and the /metrics token alike.
    app = create_app(make_settings(metrics_token=METRICS_TOKEN), registry=registry)
    with TestClient(app) as c:
        for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
            for sep in (" ", "  "):
                h = {"Authorization": f"{scheme}{sep}{KEYS['predict']}"}
                assert c.get(MODELS, headers=h).status_code == 200, (scheme, sep)
                h = {"Authorization": f"{scheme}{sep}{METRICS_TOKEN}"}
                assert c.get("/metrics", headers=h).status_code == 200, (scheme, sep)
        for value in ("Basic {}", "Token {}", "Bearer{}", "Bearerx {}", "{}", "Bearer x{}"):
            h = {"Authorization": value.format(KEYS["predict"])}
            assert c.get(MODELS, headers=h).status_code == 401, value
            h = {"Authorization": value.format(METRICS_TOKEN)}
            assert c.get("/metrics", headers=h).status_code == 401, value


def test_probes_and_pages_answer_head_like_get(make_settings: Any, registry: Any) -> None:
    app = create_app(make_settings(metrics_token=METRICS_TOKEN), registry=registry)
    token = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    with TestClient(app) as c:
        for path, headers in [
            ("/health/live", {}),
            ("/health/ready", {}),
            ("/health", {}),
            ("/metrics", token),
            ("/metrics", {}),  # 401 either way
            ("/docs", {}),
            ("/dashboard", {}),
            ("/dashboard/static/dashboard.js", {}),
        ]:
            get, head = c.get(path, headers=headers), c.head(path, headers=headers)
            assert head.status_code == get.status_code != 405, path
            assert head.content == b"", path
            assert head.headers["content-type"] == get.headers["content-type"], path
        # The API itself stays GET-only: HEAD there is no probe's business.
        assert c.head(MODELS, headers=auth("predict")).status_code == 405
