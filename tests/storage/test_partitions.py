"""PostgreSQL day partitions of predictions: made ahead, default catches the rest, dropped by
retention; migration 0005 converts an existing table (SQLite: predictions unchanged)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, event, func, select, table, text

from nexus_ml.storage import PredictionRecord, Store, make_engine, migrate, utcnow
from nexus_ml.storage.migrate import alembic_config
from nexus_ml.storage.partitions import (
    DAYS_AHEAD,
    DEFAULT_PARTITION,
    create_days,
    day_partitions,
    ensure_partitions,
    is_partitioned,
    partition_name,
)
from nexus_ml.storage.retention import purge_database

# Partitions are PostgreSQL's: these run on its variant of ``db_url`` only.
postgres_only = pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)

RecordFactory = Callable[..., PredictionRecord]  # the make_record fixture


def _count(engine: Engine, name: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table(name))).scalar_one())


def _exists(engine: Engine, table: str) -> bool:
    with engine.connect() as conn:
        return conn.execute(text("SELECT to_regclass(:t)"), {"t": table}).scalar() is not None


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_has_no_partitions(engine: Engine) -> None:
    with engine.connect() as conn:
        assert not is_partitioned(conn)
    assert ensure_partitions(engine) == 0


@postgres_only
def test_migration_makes_today_and_the_days_ahead(engine: Engine) -> None:
    today = datetime.now(UTC).date()
    with engine.connect() as conn:
        assert is_partitioned(conn)
        days = set(day_partitions(conn))
    assert {today + timedelta(days=d) for d in range(DAYS_AHEAD + 1)} <= days
    assert _exists(engine, DEFAULT_PARTITION)
    assert ensure_partitions(engine) == 0  # idempotent
    assert ensure_partitions(engine, today=today + timedelta(days=3)) == 3


@postgres_only
def test_a_row_no_day_covers_goes_to_default_then_moves_to_its_day(
    engine: Engine, store: Store, make_record: RecordFactory
) -> None:
    when = utcnow() + timedelta(days=40)
    record = make_record(created_at=when)
    assert store.insert_predictions([record]) == 1  # never refused for a missing partition
    assert _count(engine, DEFAULT_PARTITION) == 1
    with engine.begin() as conn:
        assert create_days(conn, [when.date()]) == 1
    assert _count(engine, DEFAULT_PARTITION) == 0
    assert _count(engine, partition_name(when.date())) == 1
    assert store.get_prediction(record.id).created_at == record.created_at
    # The same record again (a journal replay) is still recognised as stored.
    assert store.insert_predictions([record]) == 0


def _data_file(engine: Engine, table: str) -> Path | None:
    """The partition's file on the server, if this process can see the data directory."""
    with engine.connect() as conn:
        root = conn.execute(text("SHOW data_directory")).scalar_one()
        rel = conn.execute(text("SELECT pg_relation_filepath(:t)"), {"t": table}).scalar_one()
    path = Path(root) / rel
    return path if os.access(root, os.R_OK) else None


@postgres_only
def test_purge_drops_whole_days_and_deletes_only_in_the_boundary_day(
    engine: Engine, store: Store, make_record: RecordFactory
) -> None:
    cutoff = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(
        days=180
    )
    old_days = [cutoff.date() - timedelta(days=d) for d in range(1, 4)]
    with engine.begin() as conn:
        create_days(conn, [*old_days, cutoff.date()])
    old = [make_record(created_at=cutoff - timedelta(days=d)) for d in (1, 2, 3)]
    before_cut = make_record(created_at=cutoff - timedelta(hours=2))  # boundary day, purged
    after_cut = make_record(created_at=cutoff + timedelta(hours=2))  # boundary day, kept
    recent = make_record(created_at=utcnow() - timedelta(hours=1))
    store.insert_predictions([*old, before_cut, after_cut, recent])
    store.add_feedback(old[0].id, "healthy")
    store.add_feedback(after_cut.id, "healthy")
    first = _data_file(engine, partition_name(old_days[0]))
    if first is not None:
        with engine.connect() as conn:
            conn.execute(text("CHECKPOINT"))  # the rows are in the file, not only in the WAL
        assert first.stat().st_size > 0

    result = purge_database(engine, cutoff)

    assert result.partitions_dropped == 3
    assert (result.predictions, result.feedback) == (4, 1)
    assert not any(_exists(engine, partition_name(day)) for day in old_days)
    # The dropped partition's bytes are gone at commit: PostgreSQL truncates its file to zero
    # length at once and unlinks the empty file at the next checkpoint.
    assert first is None or not first.exists() or first.stat().st_size == 0
    assert _count(engine, partition_name(cutoff.date())) == 1
    assert store.count_predictions() == 2
    assert store.get_prediction(after_cut.id).id == after_cut.id


def _insert_raw(engine: Engine, rows: list[tuple[str, datetime]]) -> None:
    """Rows as a pre-0005 database holds them (0001's columns, feedback with its key)."""
    with engine.begin() as conn:
        for i, (rid, at) in enumerate(rows):
            conn.execute(
                text(
                    "INSERT INTO predictions (id, model, version, created_at, features, "
                    "predicted_class, confidence, probabilities, latency_seconds) VALUES "
                    "(:id, 'heart', 'v1', :at, :f, 'healthy', 0.9, :p, 0.01)"
                ),
                {"id": rid, "at": at, "f": '{"age": 50}', "p": '{"healthy": 0.9}'},
            )
            if i % 2 == 0:
                conn.execute(
                    text(
                        "INSERT INTO feedback (prediction_id, actual, correct, received_at) "
                        "VALUES (:id, 'healthy', true, :at)"
                    ),
                    {"id": rid, "at": at},
                )


def test_migration_converts_an_existing_table(db_url: str) -> None:
    command.upgrade(alembic_config(db_url), "0001")
    engine = make_engine(db_url)
    try:
        now = utcnow()
        # SQLite compares stored text: naive UTC, as the models store it.
        naive = engine.dialect.name == "sqlite"
        rows = []
        for i in range(6):
            at = now - timedelta(days=i * 10, hours=1)
            rows.append((f"{i:032x}", at.replace(tzinfo=None) if naive else at))
        _insert_raw(engine, rows)
        migrate(engine)
        store = Store(engine)
        assert store.count_predictions() == 6
        for rid, at in rows:
            assert store.get_prediction(rid).created_at.replace(tzinfo=None) == at.replace(
                tzinfo=None
            )
        with engine.connect() as conn:
            feedback = conn.execute(
                text("SELECT prediction_id, prediction_created_at FROM feedback")
            ).all()
            times = {rid: at for rid, at in feedback}
            partitioned = is_partitioned(conn)
            days = set(day_partitions(conn)) if partitioned else set()
        assert len(times) == 3 and all(t is not None for t in times.values())
        if engine.dialect.name == "postgresql":
            assert partitioned
            assert {at.date() for _, at in rows} <= days  # each stored day has its partition
            assert _count(engine, DEFAULT_PARTITION) == 0
        # The converted table behaves: a label, a purge.
        store.add_feedback(rows[1][0], "healthy")
        result = purge_database(engine, now - timedelta(days=25))
        assert result.predictions == 3  # made 30, 40 and 50 days ago
        assert result.feedback == 1  # labelled were i = 0, 2, 4 and 1: of those, 4
    finally:
        engine.dispose()


def _id_minted_at(at: datetime) -> str:
    """An id shaped as ``new_id`` makes it at ``at``."""
    return f"{int(at.timestamp() * 1000):012x}{'ab' * 10}"


def test_a_prediction_is_found_by_id_whatever_its_age_and_id(
    engine: Engine, make_record: RecordFactory
) -> None:
    now = utcnow()
    month_ago = now - timedelta(days=30)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            create_days(conn, [(month_ago - timedelta(days=d)).date() for d in range(0, 3)])
    records = {
        "time-ordered, a month old": make_record(id=_id_minted_at(month_ago), created_at=month_ago),
        "time-ordered, today": make_record(id=_id_minted_at(now), created_at=now),
        "uuid4-shaped, a month old": make_record(id="4" * 32, created_at=month_ago),
        "decodes past year 9999": make_record(id="f" * 32, created_at=month_ago),
        # Minted two days before it was stored (outside the hour around its time).
        "time far from its record": make_record(
            id=_id_minted_at(month_ago - timedelta(days=2)), created_at=month_ago
        ),
    }
    store = Store(engine)
    store.insert_predictions(list(records.values()))
    for what, record in records.items():
        found = store.get_prediction(record.id)
        assert (found.id, found.created_at.replace(tzinfo=None)) == (
            record.id,
            record.created_at.replace(tzinfo=None),
        ), what


@postgres_only
def test_a_time_ordered_id_is_looked_up_in_the_partitions_around_its_time(
    engine: Engine, make_record: RecordFactory
) -> None:
    month_ago = utcnow() - timedelta(days=30)
    with engine.begin() as conn:
        create_days(conn, [(month_ago - timedelta(days=d)).date() for d in range(-1, 40)])
    record = make_record(id=_id_minted_at(month_ago), created_at=month_ago)
    store = Store(engine)
    store.insert_predictions([record])
    statements: list[tuple[str, object]] = []

    def remember(conn: object, cursor: object, sql: str, params: object, *_: object) -> None:
        if "FROM predictions" in sql and not sql.lstrip().startswith("EXPLAIN"):
            statements.append((sql, params))

    event.listen(engine, "before_cursor_execute", remember)
    try:
        assert store.get_prediction(record.id).id == record.id
    finally:
        event.remove(engine, "before_cursor_execute", remember)
    [(sql, params)] = statements  # found by the first, pruned query
    with engine.connect() as conn:
        plan = conn.exec_driver_sql("EXPLAIN " + sql, params).scalars().all()  # type: ignore[arg-type]
    scanned = {name for line in plan for name in re.findall(r" on (predictions_\w+)", line)}
    # The hour either side of the id's time: its day, or it and a neighbour near midnight.
    assert 1 <= len(scanned) <= 2, plan
