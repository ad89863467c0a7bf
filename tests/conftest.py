"""Shared fixtures: databases (SQLite and PostgreSQL), bundled models, apps and clients.

Every API test runs twice, on SQLite and on the real PostgreSQL (a throw-away
schema per test). Without a reachable server the PostgreSQL variant skips with
the reason, except when ``CI=true``, where it fails.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from tests.helpers import IN_CI, KEYS, postgres_schema_url

from nexus_ml.api.app import create_app
from nexus_ml.config import Settings
from nexus_ml.ml.datasets import BUNDLED_DATASETS
from nexus_ml.ml.sources import ensure_bundled_models

# Deselected unless asked for (`pytest --all`, `make test`) or under CI=true:
# multi-process, live Prometheus/Alertmanager, fault, soak, fuzz and browser suites.
OPT_IN_MARKERS = ("slow", "browser")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--all",
        action="store_true",
        help="also run the slow, live-stack and browser suites (always on when CI=true)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if IN_CI or config.getoption("--all") or config.getoption("-m"):
        return
    kept, skipped = [], []
    for item in items:
        opt_in = any(item.get_closest_marker(m) for m in OPT_IN_MARKERS)
        (skipped if opt_in else kept).append(item)
    if skipped:
        config.hook.pytest_deselected(items=skipped)
        items[:] = kept
        config.stash[_DESELECTED] = len(skipped)


_DESELECTED = pytest.StashKey[int]()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    n = config.stash.get(_DESELECTED, 0)
    if n:
        terminalreporter.write_line(
            f"fast run: {n} slow/stack/browser tests deselected "
            "(`make test` or `pytest --all` runs them; CI always does)"
        )


DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _database_url(kind: str, folder: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'db' / 'nexus.db'}"
    else:
        yield from postgres_schema_url()


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty database: SQLite file, or a throw-away PostgreSQL schema."""
    yield from _database_url(request.param, tmp_path)


@pytest.fixture(scope="session")
def bundled_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two array bundled models, trained once per session (copied per test).

    The third, readmission_risk (gradient boosting, ~20 s on a loaded machine), is left out:
    the tests that need it train it themselves (tests/ml/test_readmission.py).
    """
    path = tmp_path_factory.mktemp("bundled") / "models"
    ensure_bundled_models(path, names=BUNDLED_DATASETS)
    return path


@pytest.fixture
def model_dir(bundled_models: Path, tmp_path: Path) -> Path:
    """A private copy of the bundled models (tests may retrain into it)."""
    dst = tmp_path / "models"
    shutil.copytree(bundled_models, dst)
    return dst


@pytest.fixture
def make_settings(db_url: str, model_dir: Path, tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a test service; keyword arguments override fields."""

    def build(**overrides: Any) -> Settings:
        # Overrides may replace any field, the database, models and data folder included.
        where = {"database_url": db_url, "model_path": model_dir, "data_dir": tmp_path / "data"}
        return _test_settings(**{**where, **overrides})

    return build


def _test_settings(**fields: Any) -> Settings:
    """The tests' settings: ``fields`` (the database, models and data folder at least) over
    these defaults."""
    values: dict[str, Any] = {
        "api_keys": ",".join(f"{s}:{k}" for s, k in KEYS.items()),
        "writer_flush_seconds": 0.05,
        "system_interval_seconds": 0.2,
        "alert_interval_seconds": 3600.0,
        "drift_interval_seconds": 3600.0,
        "drift_first_run_seconds": 3600.0,  # tests run the job when they mean to
        "drift_window_size": 1000,
        "shutdown_grace_seconds": 5.0,
    }
    values.update(fields)
    return Settings(**values)


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Default test settings."""
    return make_settings()


@pytest.fixture
def registry() -> CollectorRegistry:
    """A fresh metrics registry per test."""
    return CollectorRegistry()


@pytest.fixture
def client(settings: Settings, registry: CollectorRegistry) -> Iterator[TestClient]:
    """A running service (lifespan started) and a client for it."""
    app = create_app(settings, registry=registry)
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module", params=DATABASES)
def shared_settings(
    request: pytest.FixtureRequest,
    bundled_models: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Settings]:
    """Default test settings on an empty database, one per module and database: those of
    ``shared_client``."""
    folder = tmp_path_factory.mktemp("shared-service")
    model_dir = folder / "models"
    shutil.copytree(bundled_models, model_dir)
    for url in _database_url(request.param, folder):
        yield _test_settings(database_url=url, model_path=model_dir, data_dir=folder / "data")


@pytest.fixture(scope="module")
def shared_client(shared_settings: Settings) -> Iterator[TestClient]:
    """One running service per module and database, for tests that do not depend on each
    other's requests: refusals, reads of an empty store, records read back by their own ids.
    Each test would otherwise start a service of its own (0.3 s on SQLite, 1 s on PostgreSQL,
    mostly the migrations, then 0.3 s more for FastAPI to build its routes on the first
    request) for a few milliseconds of requests. A test that counts records, retrains, or
    changes settings, thresholds or metrics takes ``client``.
    """
    with TestClient(create_app(shared_settings, registry=CollectorRegistry())) as c:
        yield c


@pytest.fixture
def one_openmp_thread() -> Iterator[None]:
    """Run HistGradientBoosting on one OpenMP thread: on a shared 2-core host its default
    thread team spins against other processes (10 s instead of 0.5 s for a 240-row fit)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield
