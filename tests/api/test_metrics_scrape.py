"""One real scrape of /metrics holds every metric of the monitoring guide, with sane values.

The service is driven through its HTTP API only: one prediction, one refused
request, one training run, a batch big enough for a drift decision, a label,
and (on a second app pointed at a closed port) one database outage. The text is
parsed with prometheus_client's own parser and checked by ``promtool check
metrics``, whose findings must be exactly the exceptions docs/metrics.md lists.
"""

from __future__ import annotations

import math
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from tests.api.test_predictions import diagnostic_row
from tests.helpers import auth, require_binary

from nexus_ml.api.app import create_app
from nexus_ml.config import Settings

PREDICT = "/api/v1/models/diagnostic/predict"
PREDICT_ROUTE = "/api/v1/models/{name}/predict"
METRICS_DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
# Port 9 (discard) is closed on loopback: connections are refused at once.
UNREACHABLE_DB = "postgresql+psycopg://postgres@127.0.0.1:9/none"
DRIFT_WINDOW = 40  # batch size, and drift_min_window, so the job decides drift
N_FEATURES = 30  # the bundled diagnostic model (Wisconsin breast cancer)

# The guide's names, as the sample that proves each is exported.
GUIDE_SAMPLES = (
    "ml_system_cpu_usage_percent",
    "ml_system_memory_usage_bytes",
    "ml_system_disk_usage_bytes",
    "ml_api_requests_total",
    "ml_api_request_duration_seconds_count",
    "ml_response_size_bytes_count",
    "ml_model_predictions_total",
    "ml_model_prediction_duration_seconds_count",
    "ml_model_confidence_score_count",
    "ml_model_accuracy",
    "ml_model_training_duration_seconds_count",
    "ml_model_training_samples",
    "ml_model_features_count",
    "ml_data_quality_score",
    "ml_data_drift_score",
    "ml_errors_total",
    # "Database operation errors" / "Database operations" panel
    "ml_db_operation_errors_total",
    "ml_db_operation_duration_seconds_count",
)


# -- reading a scrape ---------------------------------------------------------


def parse(text: str) -> list[Sample]:
    """Every sample of a text-format scrape (prometheus_client's parser: it must accept it)."""
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def select(samples: list[Sample], name: str, **labels: str) -> list[Sample]:
    """Samples called ``name`` whose labels include ``labels``."""
    return [
        s
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """Sum of the matching samples (0 when there are none)."""
    return sum(s.value for s in select(samples, name, **labels))


def one(samples: list[Sample], name: str, **labels: str) -> float:
    """The value of exactly one matching sample."""
    found = select(samples, name, **labels)
    assert len(found) == 1, (name, labels, found)
    return found[0].value


def scrape(client: TestClient) -> tuple[str, list[Sample]]:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return r.text, parse(r.text)


def scrape_until(
    client: TestClient, ready: Callable[[list[Sample]], bool], timeout: float = 10.0
) -> tuple[str, list[Sample]]:
    """Scrape until ``ready`` holds (background jobs publish on their own clock)."""
    deadline = time.monotonic() + timeout
    while True:
        text, samples = scrape(client)
        if ready(samples) or time.monotonic() > deadline:
            return text, samples
        time.sleep(0.05)


# -- promtool -------------------------------------------------------------------


def documented_exceptions() -> set[str]:
    """``<metric> <finding>`` lines docs/metrics.md accepts from promtool, from its table."""
    text = METRICS_DOC.read_text(encoding="utf-8")
    section = text.split("## `promtool check metrics` exceptions", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(ml_[a-z0-9_]+)` \| `([^`]+)` \|", section, flags=re.M)
    assert rows, "docs/metrics.md lists no promtool exceptions table"
    return {f"{name} {finding}" for name, finding in rows}


def promtool_findings(text: str) -> list[str]:
    promtool = require_binary("promtool")
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    # Exit 3 = lint findings only; anything else (1 = unparsable) is a failure by itself.
    assert done.returncode in (0, 3), (done.returncode, done.stderr)
    return [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]


def assert_only_documented_findings(text: str) -> None:
    findings = promtool_findings(text)
    unexpected = [f for f in findings if f not in documented_exceptions()]
    assert not unexpected, f"promtool findings not documented in docs/metrics.md: {unexpected}"


# -- driving the service --------------------------------------------------------


def train_and_wait(client: TestClient, timeout: float = 60.0) -> dict[str, Any]:
    r = client.post("/api/v1/models/diagnostic/train", json={"seed": 3}, headers=auth("admin"))
    assert r.status_code == 202, r.text
    url = f"/api/v1/training/runs/{r.json()['id']}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(url, headers=auth("admin")).json()
        if run["status"] in ("succeeded", "failed"):
            assert run["status"] == "succeeded", run
            return run
        time.sleep(0.05)
    pytest.fail(f"training run did not finish within {timeout} s")


def test_every_guide_metric_is_scraped_with_sensible_values(
    make_settings: Callable[..., Settings], registry: CollectorRegistry, tmp_path: Path
) -> None:
    settings = make_settings(drift_min_window=DRIFT_WINDOW)
    app = create_app(settings, registry=registry)
    with TestClient(app) as c:
        old_version = c.get("/api/v1/models/diagnostic", headers=auth("predict")).json()["version"]
        first = c.post(PREDICT, json={"features": diagnostic_row(0)}, headers=auth("predict"))
        assert first.status_code == 200, first.text
        bad = c.post(PREDICT, json={"features": {"mean_radius": 1.0}}, headers=auth("predict"))
        assert bad.status_code == 422
        run = train_and_wait(c)
        # Every model is manual by default: the new version serves once promoted.
        promoted = c.post(
            f"/api/v1/models/diagnostic/versions/{run['version']}/promote", headers=auth("admin")
        )
        assert promoted.status_code == 200, promoted.text

        # The system collector publishes 0.2 s after start (test settings); its unlabelled
        # gauges exist at 0 before that, so wait for a real reading, not for the name.
        _, s = scrape_until(
            c, lambda s: any(x.value > 0 for x in select(s, "ml_system_memory_total_bytes"))
        )
        model = {"model": "diagnostic"}
        assert total(s, "ml_model_predictions_total", **model) == 1
        assert one(s, "ml_model_confidence_score_count", **model) == 1
        assert 0.5 <= one(s, "ml_model_confidence_score_sum", **model) <= 1.0
        assert one(s, "ml_model_prediction_duration_seconds_count", **model) == 1
        assert 0 < one(s, "ml_model_prediction_duration_seconds_sum", **model) < 1.0
        route = {"method": "POST", "endpoint": PREDICT_ROUTE}
        assert one(s, "ml_api_requests_total", status="200", **route) == 1
        assert one(s, "ml_api_requests_total", status="422", **route) == 1
        assert one(s, "ml_api_request_duration_seconds_count", **route) == 2
        assert one(s, "ml_response_size_bytes_count", **route) == 2
        assert one(s, "ml_response_size_bytes_sum", **route) == len(first.content) + len(
            bad.content
        )
        # Raw paths never become labels.
        assert not [x for x in s if "diagnostic/predict" in x.labels.get("endpoint", "")]
        assert one(s, "ml_model_training_duration_seconds_count", **model) == 1
        assert one(s, "ml_model_training_duration_seconds_sum", **model) > 0
        assert one(s, "ml_model_training_runs_total", outcome="success", **model) == 1
        assert one(s, "ml_model_training_runs_total", outcome="failure", **model) == 0
        assert one(s, "ml_model_training_samples", **model) == run["metrics"]["n_samples"] > 100
        assert one(s, "ml_model_features_count", **model) == N_FEATURES
        assert one(s, "ml_model_info", version=run["version"], **model) == 1
        # The replaced version's per-version series are gone, not left behind at 0.
        assert 0.9 < one(s, "ml_model_holdout_accuracy", version=run["version"], **model) <= 1
        for versioned in ("ml_model_info", "ml_model_holdout_accuracy"):
            assert select(s, versioned, version=old_version, **model) == []
        assert 0 < one(s, "ml_data_quality_score", **model) <= 1
        assert 0 <= one(s, "ml_system_cpu_usage_percent") <= 100
        assert one(s, "ml_system_memory_usage_bytes") > 0
        assert 0 < one(s, "ml_system_memory_usage_ratio") <= 1
        assert one(s, "ml_system_disk_usage_bytes") > 0
        assert 0 < one(s, "ml_system_disk_usage_ratio") <= 1

        # A window big enough for a drift decision, and one label for accuracy.
        rows = [diagnostic_row(i) for i in range(DRIFT_WINDOW)]
        r = c.post(PREDICT, json={"instances": rows}, headers=auth("predict"))
        assert r.status_code == 200, r.text
        label = first.json()["predicted_class"]
        r = c.post(
            f"/api/v1/predictions/{first.json()['id']}/feedback",
            json={"actual": label},
            headers=auth("predict"),
        )
        assert r.status_code == 201, r.text
        c.portal.call(app.state.service.writer.flush)  # type: ignore[union-attr]
        r = c.post("/api/v1/monitoring/drift/run", headers=auth("admin"))
        assert r.status_code == 200 and r.json()["ran"], r.text
        text, s = scrape(c)

    assert total(s, "ml_model_predictions_total", **model) == 1 + DRIFT_WINDOW
    assert total(s, "ml_model_predictions_total", version=run["version"], **model) == DRIFT_WINDOW
    assert one(s, "ml_model_confidence_score_count", **model) == 1 + DRIFT_WINDOW
    assert one(s, "ml_data_drift_window_size", **model) == DRIFT_WINDOW
    drift = select(s, "ml_data_drift_score", **model)
    assert {x.labels["feature"] for x in drift} == set(rows[0])
    assert all(math.isfinite(x.value) and x.value >= 0 for x in drift)
    assert 0 <= one(s, "ml_data_drift_share", **model) <= 1
    assert one(s, "ml_model_accuracy", **model) == 1.0  # the one label agreed
    assert one(s, "ml_model_accuracy_samples", **model) == 1
    assert one(s, "ml_db_records_written_total") == 1 + DRIFT_WINDOW
    assert one(s, "ml_db_operation_duration_seconds_count", operation="insert_predictions") >= 1
    assert one(s, "ml_db_records_pending") == 0
    assert_only_documented_findings(text)

    outage_text, outage = scrape_database_outage(make_settings, tmp_path)
    assert one(outage, "ml_db_operation_errors_total", operation="insert", error_type="connection")
    assert total(outage, "ml_errors_total", component="database", error_type="connection") >= 1
    assert one(outage, "ml_db_records_pending") == 1  # kept, not lost
    assert_only_documented_findings(outage_text)

    names = {x.name for x in s} | {x.name for x in outage}
    missing = [n for n in GUIDE_SAMPLES if n not in names]
    assert not missing, f"guide metrics not exported: {missing}"


def scrape_database_outage(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> tuple[str, list[Sample]]:
    """A second service whose database refuses connections: predict once, scrape the damage."""
    settings = make_settings(
        database_url=UNREACHABLE_DB, data_dir=tmp_path / "outage", shutdown_grace_seconds=1.0
    )
    app = create_app(settings, registry=CollectorRegistry())
    with TestClient(app) as c:
        # Predictions are still served: the record waits in memory/journal.
        r = c.post(PREDICT, json={"features": diagnostic_row(1)}, headers=auth("predict"))
        assert r.status_code == 200, r.text
        text, samples = scrape_until(
            c,
            lambda s: total(s, "ml_db_operation_errors_total", operation="insert") >= 1,
        )
    return text, samples
