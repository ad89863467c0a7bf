"""Shared fixtures: databases (SQLite and PostgreSQL), bundled models, apps and clients.

Every API test runs twice, on SQLite and on the real PostgreSQL (a throw-away
schema per test). Without a reachable server the PostgreSQL variant skips with
the reason, except when ``CI=true``, where it fails.
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from nexus_ml.api.app import create_app
from nexus_ml.config import Settings
from nexus_ml.ml.training import ensure_bundled_models

IN_CI = os.environ.get("CI", "").lower() == "true"

POSTGRES_URL = os.environ.get(
    "NEXUS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _admin_engine() -> Engine:
    return create_engine(POSTGRES_URL, poolclass=NullPool, connect_args={"connect_timeout": 3})


@functools.cache
def _postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used (None if it can); asked once per session."""
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        return f"PostgreSQL at {make_url(POSTGRES_URL).render_as_string()} unreachable: {exc!r}"
    finally:
        engine.dispose()
    return None


def _require_postgres() -> None:
    problem = _postgres_problem()
    if problem is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{problem} (CI=true: PostgreSQL tests must run)")
    pytest.skip(problem)


def postgres_schema_url() -> Iterator[str]:
    """Yield a URL bound to a fresh schema, then drop the schema (generator for fixtures)."""
    _require_postgres()
    schema = f"t_{secrets.token_hex(6)}"
    admin = _admin_engine()
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            # Fail rather than hang if a test leaked a connection holding locks in the schema.
            conn.execute(text("SET LOCAL lock_timeout = '10s'"))
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty database: SQLite file, or a throw-away PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'nexus.db'}"
    else:
        yield from postgres_schema_url()


# -- service fixtures ---------------------------------------------------------

KEYS = {
    "admin": "admin-key-0123456789abcdef",
    "monitor": "monitor-key-0123456789abcdef",
    "predict": "predict-key-0123456789abcdef",
}


def auth(scope: str) -> dict[str, str]:
    """Headers carrying the test key of ``scope``."""
    return {"Authorization": f"Bearer {KEYS[scope]}"}


def require_binary(name: str) -> str:
    """Path of a system binary; skip (fail under CI=true) when it is missing."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} not installed (apt-get install the Debian package; .ci/run does)"
        if IN_CI:
            pytest.fail(f"{msg} — CI=true: this test must run")
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def bundled_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two bundled models, trained once per session (copied per test)."""
    path = tmp_path_factory.mktemp("bundled") / "models"
    ensure_bundled_models(path)
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
        values: dict[str, Any] = {
            "database_url": db_url,
            "model_path": model_dir,
            "data_dir": tmp_path / "data",
            "api_keys": ",".join(f"{s}:{k}" for s, k in KEYS.items()),
            "writer_flush_seconds": 0.05,
            "system_interval_seconds": 0.2,
            "alert_interval_seconds": 3600.0,
            "drift_interval_seconds": 3600.0,
            "drift_window_size": 1000,
            "shutdown_grace_seconds": 5.0,
        }
        values.update(overrides)
        return Settings(**values)

    return build


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
