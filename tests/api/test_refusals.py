"""Refusals by a limit are recorded as what the client was told, in the shared JSON shape.

Every refusal a limit makes (413 announced or streamed, 414, 431, 415) must reach the client
as ``{"detail", "field"}`` JSON and the request metrics as its own status: never a 500, never
an ``ml_errors_total`` entry (a header-only ``Content-Length: 2000000`` used to be counted as
a 500 with ``error_type="_RequestBodyLimitResponseSent"``, which is enough to page someone).
Each kind is sent without a key and with one, to a known route and to an unknown path.
The 408 for a slow body needs a real socket: ``tests/reliability/test_limits.py``.
Also here: the request contract of the body routes (JSON only, ``seed`` an integer).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from tests.helpers import auth
from tests.security._support import sqlite_settings

from nexus_ml.api.app import create_app

MAX_BODY = 4096
MAX_URL = 1024
MAX_HEADER_BYTES = 8192
MAX_HEADER_COUNT = 40
PREDICT = "/api/v1/models/diagnostic/predict"
PREDICT_TEMPLATE = "/api/v1/models/{name}/predict"


@dataclass
class Service:
    client: TestClient
    registry: CollectorRegistry

    def requests(self, status: int, endpoint: str | None = None) -> float:
        """Sum of ml_api_requests_total samples with ``status`` (and ``endpoint``)."""
        total = 0.0
        for family in self.registry.collect():
            for s in family.samples:
                if s.name != "ml_api_requests_total" or s.labels["status"] != str(status):
                    continue
                if endpoint is None or s.labels["endpoint"] == endpoint:
                    total += s.value
        return total

    def errors(self) -> float:
        """Sum of every ml_errors_total sample."""
        return sum(
            s.value
            for family in self.registry.collect()
            for s in family.samples
            if s.name == "ml_errors_total"
        )


@pytest.fixture(scope="module")
def service(bundled_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    settings = sqlite_settings(
        bundled_models,
        tmp_path_factory.mktemp("refusals"),
        max_body_bytes=MAX_BODY,
        max_url_bytes=MAX_URL,
        max_header_bytes=MAX_HEADER_BYTES,
        max_header_count=MAX_HEADER_COUNT,
    )
    registry = CollectorRegistry()
    with TestClient(create_app(settings, registry=registry)) as client:
        yield Service(client, registry)


def _chunks(total: int) -> Iterator[bytes]:
    """A body sent chunked (no Content-Length), ``total`` bytes in 1 KiB pieces."""
    for _ in range(total // 1024):
        yield b"x" * 1024


def _announced(c: TestClient, path: str, headers: dict[str, str]) -> Any:
    # Headers only, as in the report: a Content-Length far over the limit and no body to speak of.
    return c.post(path, content=b"{}", headers={**headers, "Content-Length": "2000000"})


def _streamed(c: TestClient, path: str, headers: dict[str, str]) -> Any:
    h = {**headers, "Content-Type": "application/json"}
    return c.post(path, content=_chunks(4 * MAX_BODY), headers=h)


def _long_url(c: TestClient, path: str, headers: dict[str, str]) -> Any:
    return c.get(path, params={"q": "a" * MAX_URL}, headers=headers)


def _many_headers(c: TestClient, path: str, headers: dict[str, str]) -> Any:
    extra = {f"X-Filler-{i}": "v" for i in range(MAX_HEADER_COUNT + 1)}
    return c.get(path, headers={**headers, **extra})


def _large_headers(c: TestClient, path: str, headers: dict[str, str]) -> Any:
    return c.get(path, headers={**headers, "X-Filler": "a" * MAX_HEADER_BYTES})


# (kind, request, status, whether the refusal comes before routing)
REFUSALS: list[tuple[str, Callable[..., Any], int, bool]] = [
    ("body announced too large", _announced, 413, True),
    ("body streamed too large", _streamed, 413, False),
    ("URL too long", _long_url, 414, True),
    ("too many headers", _many_headers, 431, True),
    ("headers too large", _large_headers, 431, True),
]
CALLERS = {"no key": {}, "predict key": auth("predict"), "admin key": auth("admin")}


def _expected_endpoint(path: str, before_routing: bool) -> str:
    return "<unmatched>" if before_routing or path != PREDICT else PREDICT_TEMPLATE


def _cases() -> Iterator[Any]:
    for kind, send, status, before_routing in REFUSALS:
        for path in (PREDICT, "/no/such/path", "/health/live"):
            for caller in CALLERS:
                # A streamed body is refused only where it is read: by a route that reads it,
                # for a caller allowed in (others are answered 401/404/405 before reading).
                if not before_routing and (path != PREDICT or caller == "no key"):
                    continue
                yield pytest.param(kind, send, status, before_routing, path, caller,
                                   id=f"{status}-{kind}-{path}-{caller}")  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "send", "status", "before_routing", "path", "caller"), list(_cases())
)
def test_refusal_is_counted_as_sent_and_shaped_as_json(
    service: Service,
    kind: str,
    send: Callable[..., Any],
    status: int,
    before_routing: bool,
    path: str,
    caller: str,
) -> None:
    endpoint = _expected_endpoint(path, before_routing)
    before = service.requests(status, endpoint)
    errors = service.errors()
    server_errors = service.requests(500)

    r = send(service.client, path, CALLERS[caller])

    assert r.status_code == status, (kind, r.status_code, r.text)
    assert r.headers["content-type"] == "application/json", (kind, r.headers)
    body = r.json()
    assert set(body) == {"detail", "field"} and body["detail"], body
    assert "a" * 64 not in r.text and "2000000" not in r.text  # the client's value is not echoed
    assert service.requests(status, endpoint) == before + 1, (kind, endpoint)
    assert service.requests(500) == server_errors
    assert service.errors() == errors


def test_limits_leave_ordinary_requests_alone(service: Service) -> None:
    c = service.client
    assert c.get("/health/live", params={"q": "a" * (MAX_URL // 2)}).status_code == 200
    near = {f"X-Filler-{i}": "v" * 100 for i in range(MAX_HEADER_COUNT - 10)}
    assert c.get("/health/live", headers=near).status_code == 200
    row = c.get("/api/v1/models/diagnostic", headers=auth("predict")).json()["features"]
    features = {f["name"]: f["min"] for f in row}
    r = c.post(PREDICT, json={"features": features}, headers=auth("predict"))
    assert r.status_code == 200, r.text


# -- the request contract of the body routes --------------------------------------------------

BODY_ROUTES = [
    ("POST", PREDICT, {"features": {}}),
    ("POST", "/api/v1/predictions/0123456789abcdef/feedback", {"actual": "benign"}),
    ("POST", "/api/v1/models/diagnostic/train", {"seed": 1}),
    ("PUT", "/api/v1/monitoring/config/thresholds", {"cpu_usage_high": 80}),
]


@pytest.mark.parametrize(("method", "path", "payload"), BODY_ROUTES)
@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
     "application/jsonx", "text/json"],
)  # fmt: skip
def test_every_body_route_takes_json_only(
    service: Service, method: str, path: str, payload: dict[str, Any], content_type: str | None
) -> None:
    headers = auth("admin") if "predict" not in path and "feedback" not in path else auth("predict")
    if content_type is not None:
        headers = {**headers, "Content-Type": content_type}
    before = service.requests(415)
    r = service.client.request(method, path, content=json.dumps(payload), headers=headers)
    assert r.status_code == 415, (path, content_type, r.text)
    assert r.json() == {
        "detail": "Content-Type must be application/json for a request body",
        "field": "content-type",
    }
    assert service.requests(415) == before + 1
    # Without a key, the key is what the caller hears about.
    r = service.client.request(method, path, content=json.dumps(payload), headers={})
    assert r.status_code == 401


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "APPLICATION/JSON",
     "application/merge-patch+json"],
)  # fmt: skip
def test_json_media_types_are_accepted(service: Service, content_type: str) -> None:
    r = service.client.post(
        "/api/v1/predictions/0123456789abcdef/feedback",
        content=b'{"actual": "benign"}',
        headers={**auth("predict"), "Content-Type": content_type},
    )
    assert r.status_code == 404, r.text  # past the content type: the prediction is unknown


def test_body_routes_document_415(service: Service) -> None:
    paths = service.client.get("/openapi.json").json()["paths"]
    for method, path, _ in BODY_ROUTES:
        template = path.replace("diagnostic", "{name}").replace(
            "0123456789abcdef", "{prediction_id}"
        )
        operation = paths[template][method.lower()]
        assert "415" in operation["responses"], template
        assert list(operation["requestBody"]["content"]) == ["application/json"], template


@pytest.mark.parametrize("seed", ['"1"', "true", "false", "1.0", "1.5", "null", "[1]", "-1"])
def test_training_seed_is_a_strict_integer(service: Service, seed: str) -> None:
    r = service.client.post(
        "/api/v1/models/no_such_model/train",
        content=f'{{"seed": {seed}}}',
        headers={**auth("admin"), "Content-Type": "application/json"},
    )
    assert r.status_code == 422, (seed, r.text)
    assert r.json()["field"] == "seed"
    assert seed.strip('"') not in r.json()["detail"].replace("seed", "")


def test_training_without_a_body_needs_no_content_type(service: Service) -> None:
    # Parameters are optional: an empty POST is not a body of the wrong type.
    r = service.client.post("/api/v1/models/no_such_model/train", headers=auth("admin"))
    assert r.status_code == 404, r.text  # past the body checks: the model is unknown
