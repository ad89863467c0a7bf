"""Alembic migrations: upgrade from empty, no drift from models.py, safe when run concurrently."""

from __future__ import annotations

import threading

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from nexus_ml.storage import make_engine, migrate
from nexus_ml.storage.migrate import alembic_config
from nexus_ml.storage.models import Base
from nexus_ml.storage.partitions import include_name

TABLES = {
    "predictions",
    "feedback",
    "training_runs",
    "audit_log",
    "drift_results",
    "threshold_overrides",
    "request_rollups",
}


def _diff(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            opts = {"compare_type": True, "include_name": include_name}
            ctx = MigrationContext.configure(conn, opts=opts)
            return list(compare_metadata(ctx, Base.metadata))
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_fresh_upgrade_matches_models(db_url: str) -> None:
    assert not TABLES & _tables(db_url)
    migrate(db_url)
    assert _tables(db_url) >= TABLES
    assert _diff(db_url) == []


def test_migrate_twice_is_a_no_op(db_url: str) -> None:
    migrate(db_url)
    migrate(db_url)
    assert _diff(db_url) == []


def test_downgrade_then_upgrade(db_url: str) -> None:
    migrate(db_url)
    cfg = alembic_config(db_url)
    command.downgrade(cfg, "base")
    assert not TABLES & _tables(db_url)
    command.upgrade(cfg, "head")
    assert _diff(db_url) == []


def test_concurrent_migrate_from_many_workers(db_url: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        try:
            barrier.wait()
            migrate(db_url)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert _diff(db_url) == []
