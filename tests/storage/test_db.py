"""Engine construction and error classification."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import text

from nexus_ml.storage import DatabaseUnavailable, Store, make_engine, normalize_url
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
