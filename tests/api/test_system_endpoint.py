"""``GET /monitoring/performance/system`` reads the host without disturbing the collector."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from tests.helpers import auth

from nexus_ml.api.app import create_app
from nexus_ml.config import Settings

SYSTEM = "/api/v1/monitoring/performance/system"


@pytest.fixture
def client(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    """A running service whose system collector loop is stopped (no tick races the test)."""
    app = create_app(make_settings(), registry=CollectorRegistry())
    with TestClient(app) as c:
        assert c.portal is not None
        c.portal.call(app.state.service.collector.stop)
        yield c


def test_reading_before_the_first_publication_leaves_the_cpu_baseline(client: TestClient) -> None:
    service = client.app.state.service  # type: ignore[attr-defined]
    # As before the collector's first publication: no host total published yet.
    service.metrics.system_memory_total_bytes.set(0)
    baseline = service.collector._cpu_before
    for _ in range(3):
        body = client.get(SYSTEM, headers=auth("monitor")).json()
        assert body["source"] == "sample"
        assert 0 <= body["cpu_percent"] <= 100
        assert body["memory"]["total_bytes"] > 0
    # The next published CPU figure still covers the whole interval since the last tick.
    assert service.collector._cpu_before is baseline


def test_reading_after_publication_uses_the_published_gauges(client: TestClient) -> None:
    service = client.app.state.service  # type: ignore[attr-defined]
    snap = service.collector.collect_once()
    baseline = service.collector._cpu_before
    body = client.get(SYSTEM, headers=auth("monitor")).json()
    assert body["source"] == "collector"
    assert body["memory"]["total_bytes"] == snap.memory_total_bytes
    assert service.collector._cpu_before is baseline
