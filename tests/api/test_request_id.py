"""X-Request-ID: honoured when opaque, generated otherwise, on every answer, logged and stored."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from tests.api.test_predictions import diagnostic_row
from tests.helpers import auth

from nexus_ml.api.app import create_app
from nexus_ml.api.logs import configure_logging
from nexus_ml.config import Settings

PREDICT = "/api/v1/models/diagnostic/predict"
FRESH = re.compile(r"[0-9a-f]{32}")


def _store(client: TestClient) -> Any:
    service = client.app.state.service  # type: ignore[attr-defined]
    client.portal.call(service.writer.flush)  # type: ignore[union-attr]
    return service.store


@pytest.mark.parametrize("sent", ["a", "abc.DEF_1:2-3", "x" * 64, "0b8e7f0a-6e1f-4c3a-9d1e"])
def test_an_acceptable_client_id_is_echoed(shared_client: TestClient, sent: str) -> None:
    r = shared_client.get("/health/live", headers={"X-Request-ID": sent})
    assert r.status_code == 200
    assert r.headers["x-request-id"] == sent


def test_an_absent_id_is_generated_fresh_for_each_request(shared_client: TestClient) -> None:
    ids = [shared_client.get("/health/live").headers["x-request-id"] for _ in range(3)]
    assert all(FRESH.fullmatch(i) for i in ids)
    assert len(set(ids)) == 3


@pytest.mark.parametrize(
    "sent",
    ["", "x" * 65, "has space", "a/b", "<script>", "ünï".encode(), "name@example", "tab\there"],
)
def test_a_malformed_id_is_replaced_not_refused(
    shared_client: TestClient, sent: str | bytes
) -> None:
    headers = {**auth("predict"), "X-Request-ID": sent}
    r = shared_client.post(PREDICT, json={"features": diagnostic_row()}, headers=headers)
    assert r.status_code == 200, r.text
    echoed = r.headers["x-request-id"]
    assert FRESH.fullmatch(echoed) and echoed != sent
    stored = _store(shared_client).get_prediction(r.json()["id"])
    assert stored.request_id == echoed


def _boom() -> None:
    raise RuntimeError("a bug")


@pytest.fixture(scope="module")
def raw_client(
    shared_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """A service with one extra route that fails, answered as the server would (no raise);
    one per module and database, as every test here is refused before storing anything."""
    data_dir = tmp_path_factory.mktemp("raw-service") / "data"
    app = create_app(
        shared_settings.model_copy(update={"data_dir": data_dir}), registry=CollectorRegistry()
    )
    app.add_api_route("/boom", _boom)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize(
    ("status", "call"),
    [
        (401, lambda c, h: c.post(PREDICT, json={"features": {}}, headers=h)),
        (404, lambda c, h: c.get("/api/v1/models/nope", headers={**h, **auth("admin")})),
        (422, lambda c, h: c.post(PREDICT, content=b"", headers={**h, **auth("predict")})),
        (
            413,  # refused by the limits middleware before any route runs
            lambda c, h: c.post(
                PREDICT,
                content=b"{}",
                headers={**h, **auth("predict"), "Content-Length": "9999999"},
            ),
        ),
        (404, lambda c, h: c.get("/no/such/path", headers=h)),
        (500, lambda c, h: c.get("/boom", headers=h)),
    ],
    ids=["401", "404-model", "422", "413", "404-unrouted", "500"],
)
def test_every_error_answer_carries_the_id(raw_client: TestClient, status: int, call: Any) -> None:
    r = call(raw_client, {"X-Request-ID": "trace-me.1"})
    assert r.status_code == status, r.text
    assert r.headers["x-request-id"] == "trace-me.1"
    r = call(raw_client, {})
    assert r.status_code == status
    assert FRESH.fullmatch(r.headers["x-request-id"])


def test_the_id_and_the_profile_hash_are_stored_with_every_prediction(client: TestClient) -> None:
    h = {**auth("predict"), "X-Request-ID": "order-17:visit.3"}
    one = client.post(PREDICT, json={"features": diagnostic_row(0)}, headers=h).json()
    rows = [diagnostic_row(1), diagnostic_row(2)]
    many = client.post(PREDICT, json={"instances": rows}, headers=h).json()
    loaded = client.app.state.service.models.get("diagnostic")  # type: ignore[attr-defined]
    store = _store(client)
    ids = [one["id"]] + [p["id"] for p in many["predictions"]]
    for pid in ids:
        stored = store.get_prediction(pid)
        assert stored.request_id == "order-17:visit.3"
        assert stored.profile_hash == loaded.profile_hash
        assert re.fullmatch(r"[0-9a-f]{64}", stored.profile_hash)
        assert stored.role == "champion"


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """The service's own JSON log configuration, writing into a buffer; restored after."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging("INFO", json_lines=True)
    out = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(out)
    try:
        yield out
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def _logged(route_log: logging.Logger) -> Any:
    def handler() -> dict[str, str]:
        route_log.warning("something worth a line")
        return {}

    return handler


def test_the_request_log_lines_carry_the_id(settings: Settings, log_lines: io.StringIO) -> None:
    app = create_app(settings, registry=CollectorRegistry())
    app.add_api_route("/logs", _logged(logging.getLogger("nexus_ml.test")))
    app.add_api_route("/boom", _boom)
    with TestClient(app, raise_server_exceptions=False) as c:
        c.get("/logs", headers={"X-Request-ID": "support-ticket-42"})
        c.get("/boom", headers={"X-Request-ID": "support-ticket-43"})
        c.get("/logs", headers={"X-Request-ID": "patient 0042 Jane"})  # malformed: replaced
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    ours = [line for line in lines if line["msg"] == "something worth a line"]
    assert [line.get("request_id") for line in ours][:1] == ["support-ticket-42"]
    assert FRESH.fullmatch(ours[1]["request_id"])
    failed = [line for line in lines if line["msg"] == "unhandled error"]
    assert failed and failed[0]["request_id"] == "support-ticket-43"
    # A refused id is never written anywhere.
    assert "Jane" not in log_lines.getvalue() and "0042" not in log_lines.getvalue()
    # Outside a request there is no id (the service's start and stop lines).
    assert all(
        "request_id" not in line
        for line in lines
        if line["msg"] not in {"something worth a line", "unhandled error"}
    )
