"""The prediction hot path (api/hot_path.py) answers exactly as the FastAPI route it stands for.

Two services are built side by side from the same models and keys, one as shipped and one with
``hot_path=False`` (the declared FastAPI route alone); every request below goes to both, and
status, body and headers must be the same — apart from the fresh prediction ids. Then the
request metrics of both, and their OpenAPI documents, must be equal.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from tests.helpers import KEYS, auth

from nexus_ml.api.app import create_app
from nexus_ml.api.hot_path import HotRoute
from nexus_ml.config import Settings
from nexus_ml.ml.datasets import load_dataset

PREDICT = "/api/v1/models/diagnostic/predict"
MAX_BODY = 64 * 1024
JSON = {"Content-Type": "application/json"}
# Headers a response may carry that must agree between the two routes (date/server are the
# server's, not the app's; x-request-id is a fresh id per request).
COMPARED_HEADERS = ("content-type", "content-length", "www-authenticate", "allow", "connection")


def _row(i: int = 0) -> dict[str, float]:
    data = load_dataset("diagnostic")
    return dict(zip(data.feature_names, map(float, data.X[i]), strict=True))


def _service(model_dir: Path, folder: Path, *, hot_path: bool) -> tuple[TestClient, Any]:
    settings = Settings(
        database_url=f"sqlite:///{folder / 'nexus.db'}",
        model_path=model_dir,
        data_dir=folder / "data",
        api_keys=",".join(f"{s}:{k}" for s, k in KEYS.items()),
        max_body_bytes=MAX_BODY,
        writer_flush_seconds=0.05,
        alert_interval_seconds=3600.0,
        drift_interval_seconds=3600.0,
    )
    registry = CollectorRegistry()
    return TestClient(create_app(settings, registry=registry, hot_path=hot_path)), registry


@pytest.fixture
def pair(model_dir: Path, tmp_path: Path) -> Iterator[tuple[TestClient, TestClient, Any, Any]]:
    hot, hot_registry = _service(model_dir, tmp_path / "hot", hot_path=True)
    plain, plain_registry = _service(model_dir, tmp_path / "plain", hot_path=False)
    with hot, plain:
        assert any(isinstance(r, HotRoute) for r in hot.app.router.routes)  # type: ignore[attr-defined]
        assert not any(isinstance(r, HotRoute) for r in plain.app.router.routes)  # type: ignore[attr-defined]
        yield hot, plain, hot_registry, plain_registry


def _without_ids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "<id>" if k == "id" else _without_ids(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_ids(v) for v in value]
    return value


def _answer(client: TestClient, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    r = client.request(method, path, follow_redirects=False, **kwargs)
    try:
        body: Any = _without_ids(r.json())
    except ValueError:
        body = r.content
    headers = {h: r.headers.get(h) for h in COMPARED_HEADERS}
    if r.status_code == 200:
        # The id is fresh per prediction: same length, so the length header still agrees.
        assert len(r.content) == int(r.headers["content-length"])
    return {"status": r.status_code, "body": body, "headers": headers}


def _body(payload: Any) -> bytes:
    return json.dumps(payload, allow_nan=True).encode()


ROW = _row()
PREDICT_KEY = auth("predict")
CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "one instance": ("POST", PREDICT, {"json": {"features": ROW}, "headers": PREDICT_KEY}),
    "a batch": (
        "POST",
        PREDICT,
        {"json": {"instances": [ROW, _row(1)]}, "headers": PREDICT_KEY},
    ),
    "X-API-Key header": (
        "POST",
        PREDICT,
        {"json": {"features": ROW}, "headers": {"X-API-Key": KEYS["predict"]}},
    ),
    "lower-case bearer": (
        "POST",
        PREDICT,
        {"json": {"features": ROW}, "headers": {"Authorization": f"bearer {KEYS['predict']}"}},
    ),
    "admin key": ("POST", PREDICT, {"json": {"features": ROW}, "headers": auth("admin")}),
    "json with charset": (
        "POST",
        PREDICT,
        {
            "content": _body({"features": ROW}),
            "headers": {**PREDICT_KEY, "Content-Type": "application/json; charset=utf-8"},
        },
    ),
    "+json media type": (
        "POST",
        PREDICT,
        {
            "content": _body({"features": ROW}),
            "headers": {**PREDICT_KEY, "Content-Type": "application/vnd.api+json"},
        },
    ),
    "no key": ("POST", PREDICT, {"json": {"features": ROW}}),
    "empty bearer": (
        "POST",
        PREDICT,
        {"json": {"features": ROW}, "headers": {"Authorization": "Bearer "}},
    ),
    "basic scheme": (
        "POST",
        PREDICT,
        {"json": {"features": ROW}, "headers": {"Authorization": f"Basic {KEYS['predict']}"}},
    ),
    "wrong key": (
        "POST",
        PREDICT,
        {"json": {"features": ROW}, "headers": {"Authorization": "Bearer not-a-key"}},
    ),
    "monitor key": ("POST", PREDICT, {"json": {"features": ROW}, "headers": auth("monitor")}),
    "no key, text/plain body": (
        "POST",
        PREDICT,
        {"content": b"{}", "headers": {"Content-Type": "text/plain"}},
    ),
    "two keys, the first wrong": (
        "POST",
        PREDICT,
        {
            "json": {"features": ROW},
            "headers": [("Authorization", "Bearer not-a-key"), *PREDICT_KEY.items()],
        },
    ),
    "two content types, the first wrong": (
        "POST",
        PREDICT,
        {
            "content": _body({"features": ROW}),
            "headers": [*PREDICT_KEY.items(), ("Content-Type", "text/plain"), *JSON.items()],
        },
    ),
    "no key, unknown model": ("POST", "/api/v1/models/nope/predict", {"json": {}}),
    "text/plain body": (
        "POST",
        PREDICT,
        {"content": b"{}", "headers": {**PREDICT_KEY, "Content-Type": "text/plain"}},
    ),
    "no content type": ("POST", PREDICT, {"content": b"{}", "headers": PREDICT_KEY}),
    "text/plain, unknown model": (
        "POST",
        "/api/v1/models/nope/predict",
        {"content": b"{}", "headers": {**PREDICT_KEY, "Content-Type": "text/plain"}},
    ),
    "unknown model": (
        "POST",
        "/api/v1/models/nope/predict",
        {"json": {"features": ROW}, "headers": PREDICT_KEY},
    ),
    "unknown model, invalid JSON": (
        "POST",
        "/api/v1/models/nope/predict",
        {"content": b"{oops", "headers": {**PREDICT_KEY, **JSON}},
    ),
    "long unknown model name": (
        "POST",
        "/api/v1/models/" + "x" * 200 + "/predict",
        {"json": {"features": ROW}, "headers": PREDICT_KEY},
    ),
    "invalid JSON": ("POST", PREDICT, {"content": b"{oops", "headers": {**PREDICT_KEY, **JSON}}),
    "empty body": ("POST", PREDICT, {"content": b"", "headers": {**PREDICT_KEY, **JSON}}),
    "empty body, no content type": ("POST", PREDICT, {"headers": PREDICT_KEY}),
    "a list": ("POST", PREDICT, {"json": [ROW], "headers": PREDICT_KEY}),
    "neither": ("POST", PREDICT, {"json": {}, "headers": PREDICT_KEY}),
    "both": (
        "POST",
        PREDICT,
        {"json": {"features": ROW, "instances": [ROW]}, "headers": PREDICT_KEY},
    ),
    "unknown top field": (
        "POST",
        PREDICT,
        {"json": {"features": ROW, "patient": 1}, "headers": PREDICT_KEY},
    ),
    "NaN value": (
        "POST",
        PREDICT,
        {
            "content": _body({"features": {**ROW, "mean_radius": float("nan")}}),
            "headers": {**PREDICT_KEY, **JSON},
        },
    ),
    "several bad values": (
        "POST",
        PREDICT,
        {
            "json": {"features": {**ROW, "mean_radius": "12.5", "mean_area": None, "x": 1}},
            "headers": PREDICT_KEY,
        },
    ),
    "bad instance": (
        "POST",
        PREDICT,
        {"json": {"instances": [ROW, {**ROW, "mean_radius": True}]}, "headers": PREDICT_KEY},
    ),
    "empty batch": ("POST", PREDICT, {"json": {"instances": []}, "headers": PREDICT_KEY}),
    "body over the limit": (
        "POST",
        PREDICT,
        {"content": b" " * (MAX_BODY + 1), "headers": {**PREDICT_KEY, **JSON}},
    ),
    "chunked body over the limit": (
        "POST",
        PREDICT,
        {"content": iter([b" " * MAX_BODY, b" " * 10]), "headers": {**PREDICT_KEY, **JSON}},
    ),
    "GET": ("GET", PREDICT, {"headers": PREDICT_KEY}),
    "PUT": ("PUT", PREDICT, {"json": {"features": ROW}, "headers": PREDICT_KEY}),
    "trailing slash": ("POST", PREDICT + "/", {"json": {"features": ROW}, "headers": PREDICT_KEY}),
    "no name": (
        "POST",
        "/api/v1/models//predict",
        {"json": {"features": ROW}, "headers": PREDICT_KEY},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_hot_path_answers_as_the_declared_route(
    pair: tuple[TestClient, TestClient, Any, Any], case: str
) -> None:
    hot, plain, _, _ = pair
    method, path, kwargs = CASES[case]
    if case.startswith("chunked"):
        # A generator is consumed once: give each client its own.
        answers = [
            _answer(c, method, path, **{**kwargs, "content": iter([b" " * MAX_BODY, b" " * 10])})
            for c in (hot, plain)
        ]
    else:
        answers = [_answer(c, method, path, **kwargs) for c in (hot, plain)]
    assert answers[0] == answers[1]


def test_the_documented_error_shapes_on_the_hot_path(
    pair: tuple[TestClient, TestClient, Any, Any],
) -> None:
    """The shapes docs/api.md promises, asserted on the hot path itself (not only 'same as')."""
    hot = pair[0]
    r = hot.post(PREDICT, json={"features": ROW})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json() == {
        "detail": "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
        "field": None,
    }
    r = hot.post(PREDICT, json={"features": ROW}, headers=auth("monitor"))
    assert r.status_code == 403
    assert r.json()["detail"] == "this API key has scope 'monitor'; this endpoint needs 'predict'"
    r = hot.post("/api/v1/models/nope/predict", json={"features": ROW}, headers=PREDICT_KEY)
    assert r.status_code == 404 and r.json() == {"detail": "unknown model 'nope'", "field": "name"}
    r = hot.post(PREDICT, content=b" " * (MAX_BODY + 1), headers={**PREDICT_KEY, **JSON})
    assert r.status_code == 413 and r.headers["connection"] == "close"
    assert r.json() == {
        "detail": f"request body exceeds the limit of {MAX_BODY} bytes",
        "field": None,
    }
    r = hot.post(PREDICT, content=b"{}", headers={**PREDICT_KEY, "Content-Type": "text/plain"})
    assert r.status_code == 415 and r.json()["field"] == "content-type"
    r = hot.post(
        PREDICT,
        json={"features": {**ROW, "mean_radius": "1", "mean_area": None}},
        headers=PREDICT_KEY,
    )
    assert r.status_code == 422
    body = r.json()
    assert {p["field"] for p in body["problems"]} == {"mean_radius", "mean_area"}
    assert body["field"] == body["problems"][0]["field"]
    assert body["detail"] == body["problems"][0]["detail"] + " (and 1 more)"


def _counted(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every counter and histogram count of the ``ml_`` metrics, by name and labels (the
    writer's ``ml_db_`` ones aside: how many batches a flush makes depends on timing)."""
    out = {}
    for family in registry.collect():
        for s in family.samples:
            if (
                s.name.startswith("ml_")
                and not s.name.startswith("ml_db_")
                and s.name.endswith(("_total", "_count"))
            ):
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_same_metrics_and_openapi_document(pair: tuple[TestClient, TestClient, Any, Any]) -> None:
    hot, plain, hot_registry, plain_registry = pair
    for method, path, kwargs in CASES.values():
        if not isinstance(kwargs.get("content"), Iterator):
            for c in (hot, plain):
                c.request(method, path, follow_redirects=False, **kwargs)
    # Feature-bin counts reach their counters in blocks (the service's 1 s flush job): count
    # what both have been sent, not what one flush happened to have published.
    for c in (hot, plain):
        c.app.state.service.publisher.flush_bins()  # type: ignore[attr-defined]
    hot_counts, plain_counts = _counted(hot_registry), _counted(plain_registry)
    template = ("endpoint", "/api/v1/models/{name}/predict")
    by_status = {
        dict(labels)["status"]: v
        for (name, labels), v in hot_counts.items()
        if name == "ml_api_requests_total" and template in labels
    }
    # The limits' 413 comes before routing (no template); the rest are counted on the route.
    assert by_status == {
        "200": 7, "400": 1, "401": 7, "403": 1, "404": 3, "405": 1, "415": 4, "422": 10
    }  # fmt: skip
    assert hot_counts == plain_counts
    assert hot.get("/openapi.json").json() == plain.get("/openapi.json").json()


def test_the_request_id_is_echoed_and_stored_on_the_hot_path(
    pair: tuple[TestClient, TestClient, Any, Any],
) -> None:
    hot = pair[0]
    headers = {**PREDICT_KEY, "X-Request-ID": "trace-0001"}
    r = hot.post(PREDICT, json={"instances": [ROW, _row(1)]}, headers=headers)
    assert r.status_code == 200 and r.headers["x-request-id"] == "trace-0001"
    service = hot.app.state.service  # type: ignore[attr-defined]
    hot.portal.call(service.writer.flush)  # type: ignore[union-attr]
    for answer in r.json()["predictions"]:
        assert service.store.get_prediction(answer["id"]).request_id == "trace-0001"
    r = hot.post(PREDICT, json={"features": ROW}, headers={**PREDICT_KEY, "X-Request-ID": "a b"})
    assert r.status_code == 200 and len(r.headers["x-request-id"]) == 32  # refused: a fresh one


def test_the_short_stack_answers_an_unhandled_error_as_the_full_one(
    pair: tuple[TestClient, TestClient, Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # HotApp answers the hot route through a stack of its own (ServerErrorMiddleware, the user
    # middleware, ExceptionMiddleware); a bug inside the endpoint must still give the app's
    # 500 body with the request id, counted under the route's template, as the full stack does.
    hot, plain, hot_registry, plain_registry = pair
    assert hot.post(PREDICT, json={"features": ROW}, headers=PREDICT_KEY).status_code == 200
    assert hot.app._hot_stacks  # type: ignore[attr-defined]  # the prediction took it
    assert not getattr(plain.app, "_hot_stacks", None)

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    answers = []
    for client in (hot, plain):
        monkeypatch.setattr(client.app.state.service.serving, "predict_one", fail)  # type: ignore[attr-defined]
        raw = TestClient(client.app, raise_server_exceptions=False)
        r = raw.post(
            PREDICT, json={"features": ROW}, headers={**PREDICT_KEY, "X-Request-ID": "t-1"}
        )
        answers.append(
            (r.status_code, r.json(), r.headers["x-request-id"], r.headers["content-type"])
        )
    assert answers[0] == answers[1] == (
        500, {"detail": "internal error", "field": None}, "t-1", "application/json"
    )  # fmt: skip
    for registry in (hot_registry, plain_registry):
        labels = {"method": "POST", "endpoint": "/api/v1/models/{name}/predict", "status": "500"}
        assert registry.get_sample_value("ml_api_requests_total", labels) == 1
        errors = {"component": "api", "error_type": "RuntimeError"}
        assert registry.get_sample_value("ml_errors_total", errors) == 1


def test_cors_answers_alike_on_the_short_stack(model_dir: Path, tmp_path: Path) -> None:
    # CORS is user middleware: the short stack carries it, so a cross-origin prediction gets
    # the same CORS headers as on the full stack.
    origin = "https://dashboard.example"
    answers = []
    for hot_path in (True, False):
        folder = tmp_path / str(hot_path)
        settings = Settings(
            database_url=f"sqlite:///{folder / 'nexus.db'}",
            model_path=model_dir,
            data_dir=folder / "data",
            api_keys=",".join(f"{s}:{k}" for s, k in KEYS.items()),
            cors_origins=[origin],
            alert_interval_seconds=3600.0,
            drift_interval_seconds=3600.0,
        )
        with TestClient(create_app(settings, registry=CollectorRegistry(), hot_path=hot_path)) as c:
            for headers in ({**PREDICT_KEY, "Origin": origin}, {"Origin": origin}):
                r = c.post(PREDICT, json={"features": ROW}, headers=headers)
                answers.append(
                    (
                        hot_path,
                        r.status_code,
                        r.headers.get("access-control-allow-origin"),
                        r.headers.get("access-control-expose-headers"),
                    )
                )
    assert [a[1:] for a in answers[:2]] == [a[1:] for a in answers[2:]]
    assert answers[0][1:] == (200, origin, "X-Request-ID")
