"""Patient data stays in the prediction records: never in metrics, logs, alerts or monitoring.

Predictions carry distinctive feature values, bad requests carry distinctive strings (as a
value, as an unknown feature name, as a feedback label). Afterwards none of them may appear
in /metrics (both formats), in any log record (caplog at DEBUG, the JSON and plain formatters,
and the raw record attributes a third-party formatter could print), in /health and its
alerts, or in any monitoring API answer (every GET route under /api/v1/monitoring, found from
the app's routes). They must be in the stored prediction records, which proves the values
really reached the service.

One backend (SQLite): what reaches metrics and logs does not depend on the database.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.helpers import auth
from tests.security._support import concrete_path, endpoints, iter_strings, sqlite_app

from nexus_ml.api.logs import JsonFormatter, PlainFormatter
from nexus_ml.ml.datasets import load_dataset

MODELS = ("diagnostic", "diabetes_risk")
# Distinctive numbers: their decimal forms do not occur by chance in timings or counts.
SECRET_NUMBERS = (123.456789, 987654.321)
SECRET_VALUE = "PATIENT-SECRET-XYZ"  # a string where a number goes
SECRET_NAME = "PATIENT-SECRET-NAME-XYZ"  # an unknown feature name
SECRET_LABEL = "PATIENT-SECRET-LABEL-XYZ"  # a feedback label that is not a class
NEEDLES = ("123.456789", "987654.321", "PATIENT-SECRET")


class _Capture(logging.Handler):
    """Every record, formatted by both of the service's formatters and raw."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.json = JsonFormatter()
        self.plain = PlainFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.json.format(record))
        self.lines.append(self.plain.format(record))
        # What a formatter outside our allowlist could print: every attribute, args included.
        self.lines.append(repr(sorted(record.__dict__.items(), key=lambda kv: kv[0])))


@pytest.fixture
def capture(caplog: pytest.LogCaptureFixture) -> Iterator[_Capture]:
    caplog.set_level(logging.DEBUG)
    handler = _Capture()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


@pytest.fixture
def app(bundled_models: Path, tmp_path: Path) -> FastAPI:
    # Alerts evaluated often, so /health's alert list is computed from this traffic.
    # The quality job decides drift from 10 records, so this traffic is enough for it to
    # compute (and store, and serve) per-feature statistics of the window.
    return sqlite_app(
        bundled_models,
        tmp_path,
        alert_interval_seconds=0.1,
        drift_min_window=10,
        drift_window_size=50,
    )


# Query parameters a monitoring route cannot answer without.
REQUIRED_PARAMS = {"/api/v1/monitoring/performance/clinical": {"model": "diagnostic"}}


def _secret_row(model: str, i: int) -> dict[str, float]:
    names = load_dataset(model).feature_names
    data = load_dataset(model).X[i]
    row = dict(zip(names, map(float, data), strict=True))
    # Two features carry the distinctive numbers (varied per request below the digits the
    # needles match), the others stay realistic.
    row[names[0]] = SECRET_NUMBERS[0] + i * 1e-9
    row[names[-1]] = SECRET_NUMBERS[1] + i * 1e-7
    return row


def _find_leaks(text: str) -> list[str]:
    return [n for n in NEEDLES if n in text]


def test_patient_data_reaches_only_the_records(
    app: FastAPI, capture: _Capture, caplog: pytest.LogCaptureFixture
) -> None:
    sent: dict[str, dict[str, float]] = {}
    with TestClient(app) as client:
        service = app.state.service
        for model in MODELS:
            url = f"/api/v1/models/{model}/predict"
            for i in range(12):
                row = _secret_row(model, i)
                r = client.post(url, json={"features": row}, headers=auth("predict"))
                assert r.status_code == 200, r.text
                assert not _find_leaks(r.text)  # the answer holds no feature values
                sent[r.json()["id"]] = row
            batch = [_secret_row(model, i) for i in range(12, 15)]
            r = client.post(url, json={"instances": batch}, headers=auth("predict"))
            assert r.status_code == 200, r.text
            for p, row in zip(r.json()["predictions"], batch, strict=True):
                sent[p["id"]] = row

            # Bad requests: the secret as a value (single and batch), as a field name.
            good = _secret_row(model, 20)
            first = next(iter(good))
            bad_value = {**good, first: SECRET_VALUE}
            r = client.post(url, json={"features": bad_value}, headers=auth("predict"))
            assert r.status_code == 422 and r.json()["field"] == first
            assert not _find_leaks(r.text), r.text  # the value is never echoed
            r = client.post(url, json={"instances": [good, bad_value]}, headers=auth("predict"))
            assert r.status_code == 422 and not _find_leaks(r.text), r.text
            r = client.post(
                url, json={"features": {**good, SECRET_NAME: 1.0}}, headers=auth("predict")
            )
            # The client's own unknown field NAME is echoed to that client (so it can fix
            # its request): accepted, see docs/security.md. Its values are not.
            assert r.status_code == 422 and r.json()["field"] == SECRET_NAME
            assert _find_leaks(r.text) == ["PATIENT-SECRET"], r.text
            r = client.post(url, json={"features": {SECRET_NAME: 1.0}}, headers=auth("predict"))
            assert r.status_code == 422
            r = client.post(url, json={SECRET_NAME: good}, headers=auth("predict"))
            assert r.status_code == 422

        pid = next(iter(sent))
        r = client.post(
            f"/api/v1/predictions/{pid}/feedback",
            json={"actual": SECRET_LABEL},
            headers=auth("predict"),
        )
        assert r.status_code == 422 and not _find_leaks(r.text), r.text

        # Let every background part see the traffic: writer, quality job, alert evaluation.
        client.portal.call(service.writer.flush)
        r = client.post("/api/v1/monitoring/drift/run", headers=auth("admin"))
        assert r.status_code == 200, r.text
        assert not _find_leaks(r.text), r.text
        time.sleep(0.3)  # two alert evaluations

        exposed: dict[str, str] = {}
        for accept in ("text/plain", "application/openmetrics-text; version=1.0.0"):
            exposed[f"/metrics ({accept})"] = client.get(
                "/metrics", headers={"Accept": accept}
            ).text
        for url in ("/health", "/health/ready", "/health/live"):
            exposed[url] = client.get(url).text
        monitoring = [
            e
            for e in endpoints(app)
            if e.method == "GET" and e.path.startswith("/api/v1/monitoring/")
        ]
        assert len(monitoring) >= 10, monitoring  # the routes were found, not assumed
        for endpoint in monitoring:
            params = REQUIRED_PARAMS.get(endpoint.path, {})
            r = client.get(concrete_path(endpoint.path), params=params, headers=auth("admin"))
            assert r.status_code == 200, (str(endpoint), r.text)
            # Strings inside the JSON, so that a value rendered as 123.456789 is found whatever
            # the JSON spacing.
            exposed[str(endpoint)] = r.text + "\n".join(iter_strings(r.json()))
        for url in ("/api/v1/models", "/api/v1/models/diagnostic"):
            exposed[url] = client.get(url, headers=auth("predict")).text

        stored = {pid: service.store.get_prediction(pid) for pid in sent}

    leaks = {where: _find_leaks(text) for where, text in exposed.items() if _find_leaks(text)}
    assert not leaks, leaks

    assert capture.lines, "no log record was captured: the log check would be vacuous"
    log_leaks = [line for line in capture.lines if _find_leaks(line)]
    assert not log_leaks, log_leaks[:5]
    assert not _find_leaks(caplog.text)

    # The records do hold the values: without this the test could pass with nothing sent.
    for pid, row in sent.items():
        assert stored[pid].features == row
    assert any(
        abs(r.features[next(iter(r.features))] - SECRET_NUMBERS[0]) < 1e-6 for r in stored.values()
    )
