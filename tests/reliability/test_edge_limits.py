"""Hostile request heads against the real server: huge headers and URLs, many headers, slow
and idle connections. Each is refused or closed promptly, in the JSON error shape, and
``/health/live`` keeps answering meanwhile (polled on fresh connections throughout).

The service runs as documented (``uvicorn --http nexus_ml.api.edge:BoundedHttpToolsProtocol
--factory nexus_ml.api.asgi:app_from_env``) with the default size limits and a 2 s header
timeout. Bounds in time are generous liveness properties (a stalled event loop takes many
seconds), not speed claims; the figures are in docs/reliability.md (``benchmarks/bench_edge.py``).
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.helpers import auth
from tests.reliability.attacks import (
    LivenessProbe,
    SlowHeaders,
    big_header_request,
    long_url_request,
    many_headers_request,
    send_request,
)
from tests.reliability.service import (
    MODEL,
    Service,
    feature_rows,
    free_port,
    metric_sum,
    service_env,
    uvicorn_command,
)

HEADER_TIMEOUT = 2.0
MAX_URL = 8192  # the defaults
MAX_HEADER_BYTES = 65_536
MAX_HEADER_COUNT = 100
LIVE_WITHIN = 2.0  # /health/live must answer within this during every attack
MiB = 1 << 20

# A server process and ~30 s of attacks: with the fault suites, not in the fast default run.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(bundled_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("edge")
    env = service_env(
        models=bundled_models,
        data_dir=root / "data",
        database_url=f"sqlite:///{root / 'nexus.db'}",
        ML_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
    )
    port = free_port()
    with Service(uvicorn_command(port, 5), env, port, root / "service.log") as svc:
        svc.start()
        yield svc


def _errors(svc: Service) -> tuple[float, float]:
    """(requests answered 500, ml_errors_total) as /metrics reports them."""
    m = svc.metrics()
    return metric_sum(m, "ml_api_requests_total", status="500"), metric_sum(m, "ml_errors_total")


# (name, request, status): the server refuses the large ones while they arrive (having read
# at most the limit and one read more), the application the ones under the head limit.
OVERSIZED = [
    ("header 70 KiB", big_header_request("/health/live", 70 * 1024), 431),
    ("header 16 MiB", big_header_request("/health/live", 16 * MiB), 431),
    ("header 16 MiB, unknown path", big_header_request("/nope", 16 * MiB), 431),
    ("URL 9 KiB", long_url_request("/health/live", 9 * 1024), 414),
    ("URL 1 MiB", long_url_request("/health/live", MiB), 414),
    ("URL 16 MiB, API path", long_url_request("/api/v1/models", 16 * MiB), 414),
    ("101 headers", many_headers_request("/health/live", MAX_HEADER_COUNT + 1), 431),
    ("20 000 headers", many_headers_request("/health/live", 20_000), 431),
]


@pytest.mark.parametrize(
    ("name", "request_bytes", "status"), OVERSIZED, ids=[o[0] for o in OVERSIZED]
)
def test_oversized_heads_are_refused_without_stalling(
    service: Service, name: str, request_bytes: bytes, status: int
) -> None:
    errors = _errors(service)
    with LivenessProbe(service.port, interval=0.05) as probe:
        outcome = send_request(service.port, request_bytes, timeout=60)
    assert outcome.status == status, (name, outcome)
    assert json.loads(outcome.body)["field"] is None and json.loads(outcome.body)["detail"]
    # Even a refusal made before there is a request carries an id (a fresh one: none was sent).
    assert re.search(rb"\r\nx-request-id: [0-9a-f]{32}\r\n", outcome.head + b"\r\n"), outcome.head
    if len(request_bytes) > 4 * MiB:
        # Refused while it arrived: the rest was never read (only kernel buffers took some).
        assert outcome.sent < len(request_bytes), (name, outcome.sent)
    assert outcome.seconds < LIVE_WITHIN, (name, outcome.seconds)
    assert probe.latencies and probe.failures == 0, probe
    assert probe.worst < LIVE_WITHIN, (name, probe.worst)
    assert _errors(service) == errors, name


def test_slow_headers_are_cut_off_at_the_timeout(service: Service) -> None:
    # 200 slowloris connections, each sending a header line a second and never finishing.
    with LivenessProbe(service.port, interval=0.1) as probe:
        attack = SlowHeaders(service.port, connections=200, interval=0.5).run(HEADER_TIMEOUT + 10)
    closed = [t for t in attack.closed_after if t is not None]
    assert len(closed) == 200, f"{200 - len(closed)} slow connections still open"
    assert set(attack.statuses) == {408}, set(attack.statuses)
    assert min(closed) >= HEADER_TIMEOUT * 0.9, min(closed)  # the timeout, not earlier
    assert max(closed) < HEADER_TIMEOUT + 5, max(closed)
    assert probe.failures == 0 and probe.worst < LIVE_WITHIN, (probe.failures, probe.worst)


def test_idle_connections_are_closed_without_an_answer(service: Service) -> None:
    with LivenessProbe(service.port, interval=0.1) as probe:
        attack = SlowHeaders(service.port, connections=100, interval=None, start=b"").run(
            HEADER_TIMEOUT + 10
        )
    closed = [t for t in attack.closed_after if t is not None]
    assert len(closed) == 100, f"{100 - len(closed)} idle connections still open"
    assert set(attack.statuses) == {None}  # nothing was asked, nothing is answered
    assert min(closed) >= HEADER_TIMEOUT * 0.9 and max(closed) < HEADER_TIMEOUT + 5, closed
    assert probe.failures == 0 and probe.worst < LIVE_WITHIN


def test_malformed_request_gets_json_400(service: Service) -> None:
    for garbage in (b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"):
        outcome = send_request(service.port, garbage, timeout=10)
        assert outcome.status == 400, (garbage, outcome)
        assert json.loads(outcome.body) == {"detail": "invalid HTTP request", "field": None}


def test_ordinary_traffic_is_unaffected(service: Service) -> None:
    errors = _errors(service)
    # Keep-alive: several requests, with and without bodies, on one connection.
    with httpx.Client(base_url=service.base, headers=auth("predict"), timeout=10) as c:
        for features in feature_rows(3):
            assert c.get("/health/live").status_code == 200
            r = c.post(f"/api/v1/models/{MODEL}/predict", json={"features": features})
            assert r.status_code == 200, r.text
        # Close to every limit, within each.
        near = {f"X-Near-{i}": "v" * 900 for i in range(60)}  # ~55 KiB in 60 headers
        assert c.get("/health/live", headers=near).status_code == 200
        assert c.get("/health/live", params={"q": "a" * (MAX_URL - 100)}).status_code == 200
    # Pipelining: two requests in one write get two answers, in order.
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as s:
        one = b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"
        two = b"GET /health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        s.sendall(one + two)
        data = b""
        while chunk := s.recv(65536):  # until the server closes after the second answer
            data += chunk
        assert data.count(b"HTTP/1.1 200") == 2, data
        assert data.index(b'"alive"') < data.index(b'"ready"'), data
    assert _errors(service) == errors
