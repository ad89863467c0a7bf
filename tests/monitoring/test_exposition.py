"""render_metrics: text by default, OpenMetrics on request, both parse back."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from nexus_ml.monitoring.exposition import render_metrics
from nexus_ml.monitoring.metrics import Metrics, build_metrics


@pytest.fixture
def metrics() -> Metrics:
    m = build_metrics(CollectorRegistry())
    m.model_predictions_total.labels("diag", "1", "flu").inc(3)
    m.model_prediction_duration_seconds.labels("diag").observe(0.002)
    m.api_requests_total.labels("GET", "/health", "200").inc()
    m.system_cpu_usage_percent.set(12.5)
    return m


@pytest.mark.parametrize("accept", [None, "", "text/plain", "text/html,*/*;q=0.8", "*/*"])
def test_prometheus_text_by_default(metrics: Metrics, accept: str | None) -> None:
    body, content_type = render_metrics(metrics.registry, accept)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in parse_text(body.decode())}
    assert families["ml_model_predictions"].samples[0].value == 3
    assert not body.endswith(b"# EOF\n")


@pytest.mark.parametrize(
    "accept",
    [
        "application/openmetrics-text",
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        # What Prometheus itself sends.
        "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;"
        "version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
    ],
)
def test_openmetrics_when_asked(metrics: Metrics, accept: str) -> None:
    body, content_type = render_metrics(metrics.registry, accept)
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith(b"# EOF\n")
    families = {f.name: f for f in parse_om(body.decode())}
    assert families["ml_model_predictions"].type == "counter"
    assert families["ml_system_cpu_usage_percent"].samples[0].value == 12.5


def test_empty_multiprocess_dir_renders_empty_body(tmp_path: Path) -> None:
    body, content_type = render_metrics(CollectorRegistry(), None, tmp_path)
    assert body == b""
    assert content_type.startswith("text/plain")
    body, _ = render_metrics(CollectorRegistry(), "application/openmetrics-text", tmp_path)
    assert body == b"# EOF\n"


def test_multiprocess_dir_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a directory"):
        render_metrics(CollectorRegistry(), None, tmp_path / "missing")
