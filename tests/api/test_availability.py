"""Availability counts only 5xx answers against the service: a client's 4xx is the client's fault.

Both readings are checked, the counters summary (``requests.availability``) and the SLO report
(``availability.value`` and ``met``), after a mix of 2xx, 4xx and 5xx answers; the report's
``met`` is checked exactly at its target.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.helpers import auth

from nexus_ml.service.views.reports import Reports
from nexus_ml.storage import DatabaseUnavailable
from nexus_ml.thresholds import Thresholds

M = "/api/v1/monitoring"


def client_errors(client: TestClient) -> list[int]:
    """One answer of each 4xx kind the API gives; none is the service's fault."""
    answers = [
        client.get("/api/v1/models"),  # no key: 401
        client.get(M + "/alerts", headers=auth("predict")),  # wrong scope: 403
        client.get("/api/v1/models/no_such_model", headers=auth("predict")),  # 404
        client.post(
            "/api/v1/models/diagnostic/predict", json={"features": {}}, headers=auth("predict")
        ),  # missing features: 422
        client.post(
            "/api/v1/models/diagnostic/predict", content=b"{not json", headers=auth("predict")
        ),
    ]
    return [r.status_code for r in answers]


def read_both(client: TestClient) -> tuple[dict[str, Any], dict[str, Any]]:
    summary = client.get(M + "/metrics/summary", headers=auth("monitor"))
    report = client.get(M + "/reports/summary", headers=auth("monitor"))
    assert summary.status_code == report.status_code == 200
    return summary.json()["requests"], report.json()["availability"]


def report_errors(client: TestClient) -> dict[str, int]:
    """The period report's error counts (5xx and 4xx answers since start, by component)."""
    report = client.get(M + "/reports/summary", headers=auth("monitor"))
    assert report.status_code == 200
    errors: dict[str, int] = report.json()["errors"]
    return errors


def test_client_errors_do_not_count_against_availability(client: TestClient) -> None:
    for _ in range(3):
        assert client.get("/api/v1/models", headers=auth("predict")).status_code == 200
    statuses = client_errors(client) + client_errors(client)
    assert all(400 <= s < 500 for s in statuses), statuses
    requests, avail = read_both(client)
    assert requests["by_class"].get("4xx", 0) >= len(statuses)
    assert "5xx" not in requests["by_class"]
    assert requests["availability"] == 1.0
    assert avail["errors_5xx"] == 0 and avail["requests"] >= 3 + len(statuses)
    assert avail["value"] == 1.0 and avail["met"] is True
    assert avail["error_budget_remaining"] == 1.0
    errors = report_errors(client)
    assert errors["responses_5xx"] == 0
    assert errors["responses_4xx"] == requests["by_class"]["4xx"]


def test_server_errors_count_and_client_errors_stay_out_of_the_ratio(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.get("/api/v1/models", headers=auth("predict")).status_code == 200
    client_errors(client)
    store = client.app.state.service.store  # type: ignore[attr-defined]

    def down(*args: object, **kwargs: object) -> object:
        raise DatabaseUnavailable("down")

    monkeypatch.setattr(store, "window_aggregates", down)
    assert client.get(M + "/metrics/predictions", headers=auth("monitor")).status_code == 503
    monkeypatch.undo()

    requests, avail = read_both(client)
    by_class = requests["by_class"]
    assert by_class["5xx"] == 1 and by_class["4xx"] >= 5
    # 4xx answers are in the denominator (they were answered) and nowhere else.
    assert requests["availability"] == pytest.approx(1 - 1 / sum(by_class.values()), rel=1e-12)
    assert avail["errors_5xx"] == 1
    assert avail["value"] == pytest.approx(1 - 1 / avail["requests"], rel=1e-12)
    # A handful of requests with one 5xx is far below 99.9 %.
    assert avail["met"] is False
    errors = report_errors(client)
    assert errors["responses_5xx"] == 1
    assert errors["responses_4xx"] == by_class["4xx"]


def test_a_service_that_only_answered_successes_reports_no_errors(client: TestClient) -> None:
    """No 4xx or 5xx answer yet: both counts read 0 (not absent, not guessed)."""
    assert client.get("/api/v1/models", headers=auth("predict")).status_code == 200
    errors = report_errors(client)
    assert (errors["responses_5xx"], errors["responses_4xx"]) == (0, 0)


def availability_report(target: float, classes: dict[str, int]) -> Any:
    """The period report's availability block for these status-class counts."""
    reports = Reports(
        db=None,  # type: ignore[arg-type]
        models=None,  # type: ignore[arg-type]
        families=None,  # type: ignore[arg-type]
        thresholds=SimpleNamespace(current=Thresholds(availability_slo=target)),  # type: ignore[arg-type]
        alerts=None,  # type: ignore[arg-type]
        lifecycle=SimpleNamespace(started_at=time.time()),  # type: ignore[arg-type]
    )
    return reports._availability(classes)


@pytest.mark.parametrize(
    ("classes", "met"),
    [
        ({"2xx": 3, "5xx": 1}, True),  # exactly 0.75: the target is met at the limit
        ({"2xx": 2, "4xx": 1, "5xx": 1}, True),  # a 4xx is not a failure: still exactly 0.75
        ({"2xx": 2, "5xx": 1}, False),  # 0.667
        ({"2xx": 5, "4xx": 50, "5xx": 2}, True),  # answered: 4xx are in the denominator only
        ({"4xx": 3, "5xx": 1}, True),
        ({"2xx": 1, "4xx": 1, "5xx": 1}, False),
    ],
)
def test_report_met_at_and_around_the_target(classes: dict[str, int], met: bool) -> None:
    answer = availability_report(0.75, classes)
    total = sum(classes.values())
    assert answer.value == 1 - classes["5xx"] / total
    assert answer.errors_5xx == classes["5xx"] and answer.requests == total
    assert answer.met is met
    assert answer.error_budget_remaining == pytest.approx(
        1 - (classes["5xx"] / total) / 0.25, rel=1e-12
    )


def test_report_before_the_first_request_has_no_value() -> None:
    answer = availability_report(0.999, {})
    assert answer.value is None and answer.met is None and answer.error_budget_remaining is None
