"""Hostile traffic cannot grow /metrics: label values come from bounded sets only.

Thousands of requests with random paths, methods, model names and feature names must
leave the number of series of every metric family where a short warm-up left it, and
none of the random strings may appear in any label value. A label built from client
input (raw path, model name from the URL, feature name from the body) would grow a
series per request and eventually take Prometheus down.
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from tests.helpers import auth
from tests.security._support import Exposition, sqlite_app

from nexus_ml.ml.datasets import load_dataset

SEED = 1729
STORM = 3000
# Per family, generously above today's largest (request histograms: routes x methods x buckets).
MAX_SERIES_PER_FAMILY = 2500
MODELS = ("diagnostic", "diabetes_risk")
TOKEN_PREFIX = "zqx"  # every random string starts with it, so a leak is found by substring


@pytest.fixture
def client(bundled_models: Path, tmp_path: Path) -> Iterator[TestClient]:
    # The quality job and alert evaluation are off (hour-long intervals) so that only the
    # requests below change the metrics.
    app = sqlite_app(bundled_models, tmp_path, system_interval_seconds=3600.0)
    with TestClient(app, follow_redirects=False) as c:
        yield c


METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "<random>")
PREFIXES = ("/", "/api/v1/models/", "/api/v1/monitoring/", "/dashboard/static/", "/health/")
KINDS = ("path", "model", "feature names", "extra feature", "query")


class Storm:
    """Random hostile requests, reproducible from one seed.

    A request is a discrete shape (kind, method, prefix) filled with random strings. The
    shape decides the status and route template; the strings must decide nothing. The
    warm-up sends every shape once, so any series the storm adds afterwards can only come
    from a random string reaching a label.
    """

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.tokens: set[str] = set()
        self.features = {m: list(load_dataset(m).feature_names) for m in MODELS}

    def token(self) -> str:
        # No '/', '?' or '#': a random string must not change which route a request matches.
        alphabet = string.ascii_letters + string.digits + "-_.~%'\"<>{}é中"
        token = TOKEN_PREFIX + "".join(self.rng.choices(alphabet, k=self.rng.randint(4, 24)))
        self.tokens.add(token)
        return token

    def _method(self, method: str) -> str:
        if method != "<random>":
            return method
        name = TOKEN_PREFIX.upper() + "".join(self.rng.choices(string.ascii_uppercase, k=8))
        self.tokens.add(name)
        return name

    def shapes(self) -> list[tuple[str, str, str]]:
        """Every discrete shape of request."""
        return [(k, m, p) for k in KINDS for m in METHODS for p in PREFIXES]

    def random_shape(self) -> tuple[str, str, str]:
        return (self.rng.choice(KINDS), self.rng.choice(METHODS), self.rng.choice(PREFIXES))

    def send(self, client: TestClient, shape: tuple[str, str, str]) -> int:
        kind, method, prefix = shape
        method = self._method(method)
        model = MODELS[len(prefix) % 2]  # part of the shape, not random
        if kind == "path":  # a random path, anywhere or under a real prefix
            # Under a real prefix one segment (it may fill a template); at the root, several.
            n = 1 if prefix != "/" else self.rng.randint(1, 3)
            segments = [quote(self.token(), safe="") for _ in range(n)]
            r = client.request(method, prefix + "/".join(segments), headers=auth("admin"))
        elif kind == "model":  # a random model name in the predict URL
            url = f"/api/v1/models/{quote(self.token(), safe='')}/predict"
            r = client.request(method, url, json={"features": {"x": 1.0}}, headers=auth("predict"))
        elif kind == "feature names":  # random feature names, no real ones
            body = {"features": {self.token(): self.rng.random() for _ in range(3)}}
            url = f"/api/v1/models/{model}/predict"
            r = client.request(method, url, json=body, headers=auth("predict"))
        elif kind == "extra feature":  # every real feature plus a random one, or a bad value
            row: dict[str, Any] = {name: self.rng.random() for name in self.features[model]}
            if self.rng.random() < 0.5:
                row[self.token()] = 1.0
            else:
                row[self.features[model][0]] = self.token()  # a string where a number goes
            url = f"/api/v1/models/{model}/predict"
            r = client.request(method, url, json={"features": row}, headers=auth("predict"))
        else:  # random query parameters on a real route
            url = f"/api/v1/monitoring/metrics/predictions?{quote(self.token())}=1"
            r = client.request(method, url, headers=auth("monitor"))
        return r.status_code


def _series(client: TestClient) -> tuple[dict[str, set[str]], Exposition]:
    r = client.get("/metrics")
    assert r.status_code == 200
    exposition = Exposition(r.text)
    return exposition.series(), exposition


def test_random_traffic_does_not_grow_series(client: TestClient) -> None:
    storm = Storm(SEED)
    statuses = [storm.send(client, shape) for shape in storm.shapes()]
    assert max(statuses) < 500, statuses
    client.get("/metrics")  # a scrape is counted after its answer: make that series exist
    before, _ = _series(client)

    statuses = [storm.send(client, storm.random_shape()) for _ in range(STORM)]
    assert max(statuses) < 500
    assert {404, 405, 422} <= set(statuses)  # the storm reached every refusal branch
    after, exposition = _series(client)

    grown = {
        family: sorted(after[family] - before.get(family, set()))[:5]
        for family in after
        if after[family] - before.get(family, set())
    }
    assert not grown, f"series created by random traffic after the warm-up: {grown}"
    too_many = {f: len(s) for f, s in after.items() if len(s) > MAX_SERIES_PER_FAMILY}
    assert not too_many, too_many

    leaked = {
        value
        for value in exposition.label_values()
        if TOKEN_PREFIX in value.lower() or any(t in value for t in storm.tokens)
    }
    assert not leaked, f"client strings in label values: {sorted(leaked)[:10]}"
    assert TOKEN_PREFIX not in exposition.text.lower()  # not in names or help text either
    assert len(storm.tokens) > 1000  # the storm really used thousands of distinct strings


def test_request_labels_are_templates_and_known_methods(client: TestClient) -> None:
    storm = Storm(SEED + 1)
    for shape in storm.shapes():
        storm.send(client, shape)
    _, exposition = _series(client)
    paths: set[str] = set()
    methods: set[str] = set()
    for name, labels in exposition.samples():
        if name == "ml_api_requests_total":
            paths.add(labels["endpoint"])
            methods.add(labels["method"])
    routes = {
        "<unmatched>",
        "/api/v1/models/{name}",
        "/api/v1/models/{name}/predict",
        "/api/v1/monitoring/metrics/predictions",
        "/dashboard/static/{path}",
        "/metrics",
    }
    assert paths <= routes, paths - routes
    assert methods <= {"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "OTHER"}
    assert "OTHER" in methods  # random methods were sent and folded into one label
