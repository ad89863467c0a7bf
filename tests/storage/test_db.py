"""Engine construction and error classification."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from nexus_ml.storage import (
    DatabaseUnavailable,
    PredictionRecord,
    Store,
    make_engine,
    new_id,
    normalize_url,
)
from nexus_ml.storage.db import sqlite_path
from nexus_ml.storage.errors import is_connection_error

CLOSED_PORT_URL = "postgresql+psycopg://postgres@127.0.0.1:1/test"


def test_sqlite_engine_creates_folder_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "x.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 5000
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert path.parent.is_dir()
    finally:
        engine.dispose()


def test_normalize_url_picks_psycopg3() -> None:
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite"
    assert sqlite_path("sqlite:///:memory:") is None
    assert sqlite_path("sqlite:////a/b.db") == Path("/a/b.db")


def test_unreachable_postgres_fails_fast_as_unavailable() -> None:
    engine = make_engine(CLOSED_PORT_URL)
    try:
        start = time.monotonic()
        with pytest.raises(DatabaseUnavailable) as info:
            Store(engine).ping()
        assert time.monotonic() - start < 5
        assert is_connection_error(info.value.__cause__ or info.value)
    finally:
        engine.dispose()


def test_ping_measures_round_trip(store: Store) -> None:
    assert 0 < store.ping() < 5


def _calls() -> dict[str, Callable[[Store], object]]:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    return {
        "ping": lambda s: s.ping(),
        "insert_predictions": lambda s: s.insert_predictions(
            [PredictionRecord(new_id(), "heart", "v1", t0, {}, "a", 0.5, {"a": 0.5}, 0.01)]
        ),
        "get_prediction": lambda s: s.get_prediction("0" * 32),
        "recent_predictions": lambda s: s.recent_predictions("heart"),
        "window_aggregates": lambda s: s.window_aggregates(None, t0, t0 + timedelta(hours=1)),
        "window_counts": lambda s: s.window_counts(None, t0, t0 + timedelta(hours=1), 60),
        "prediction_stats": lambda s: s.prediction_stats(),
        "count_predictions": lambda s: s.count_predictions(),
        "add_feedback": lambda s: s.add_feedback("0" * 32, "a"),
        "labelled_predictions": lambda s: s.labelled_predictions("heart", t0),
        "list_audit": lambda s: s.list_audit(),
        "threshold_overrides": lambda s: s.threshold_overrides(),
    }


@pytest.mark.parametrize("method", sorted(_calls()))
def test_every_repository_call_reports_an_unreachable_database_as_unavailable(
    method: str,
) -> None:
    """Callers handle one error type for an outage, never a driver's own."""
    engine = make_engine(CLOSED_PORT_URL)
    try:
        with pytest.raises(DatabaseUnavailable):
            _calls()[method](Store(engine))
    finally:
        engine.dispose()


def test_every_public_repository_method_translates_errors() -> None:
    public = [
        name
        for cls in Store.__mro__
        if cls is not object
        for name, value in vars(cls).items()
        if not name.startswith("_") and inspect.isfunction(value)
    ]
    assert set(_calls()) <= set(public)
    unwrapped = [n for n in public if not hasattr(getattr(Store, n), "__wrapped__")]
    assert unwrapped == []
