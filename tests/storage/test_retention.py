"""Retention: old predictions and their feedback deleted, counted; the bytes gone on SQLite."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from nexus_ml.storage import PredictionRecord, Store, utcnow
from nexus_ml.storage.db import sqlite_path
from nexus_ml.storage.journal import Segment, encode, quarantine
from nexus_ml.storage.rejected import RejectedFiles
from nexus_ml.storage.retention import purge_database, purge_files

# Values no other row holds, to look for in the database file's bytes.
MARKER_FLOAT = 987654.123456789
MARKER_TEXT = "ZQXJ-purge-me-4711"

RecordFactory = Callable[..., PredictionRecord]  # the make_record fixture


def _old_and_new(store: Store, make_record: RecordFactory, n_old: int = 5, n_new: int = 3):
    now = utcnow()
    old = [
        make_record(
            created_at=now - timedelta(days=200, minutes=i),
            features={"chol": MARKER_FLOAT, "note": MARKER_TEXT, "i": i},
        )
        for i in range(n_old)
    ]
    new = [make_record(created_at=now - timedelta(days=1, minutes=i)) for i in range(n_new)]
    assert store.insert_predictions(old + new) == n_old + n_new
    for r in old[:2] + new[:1]:
        store.add_feedback(r.id, "healthy")
    return old, new


def test_purge_deletes_old_rows_and_their_feedback_only(
    store: Store, make_record: RecordFactory
) -> None:
    _, new = _old_and_new(store, make_record)
    result = purge_database(store.engine, utcnow() - timedelta(days=180))
    assert (result.predictions, result.feedback) == (5, 2)
    assert store.count_predictions() == 3
    assert {store.get_prediction(r.id).id for r in new} == {r.id for r in new}
    labelled = store.labelled_predictions("heart", utcnow() - timedelta(days=400))
    assert [row.prediction_id for row in labelled] == [new[0].id]
    # A second purge finds nothing more.
    again = purge_database(store.engine, utcnow() - timedelta(days=180))
    assert (again.predictions, again.feedback) == (0, 0)


def test_feedback_of_a_purged_prediction_left_by_a_race_goes_next_time(
    store: Store, make_record: RecordFactory
) -> None:
    """A label inserted after its prediction was purged (no foreign key) is an orphan the
    next purge removes, by the prediction time it carries."""
    old, _ = _old_and_new(store, make_record, n_old=1, n_new=0)
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM predictions WHERE id = :i"), {"i": old[0].id})
    result = purge_database(store.engine, utcnow() - timedelta(days=180))
    assert result.feedback == 1


def _file_bytes(engine: Engine) -> bytes:
    path = sqlite_path(engine.url)
    assert path is not None
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


# PostgreSQL: test_partitions.py checks that a dropped partition's file is emptied.
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_purged_values_are_gone_from_the_file_and_the_wal(
    store: Store, make_record: RecordFactory
) -> None:
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA secure_delete")).scalar() == 1
    _old_and_new(store, make_record, n_old=50)
    before = _file_bytes(store.engine)
    # The check is not vacuous: the values are there (in the WAL or the file) before.
    assert MARKER_TEXT.encode() in before and repr(MARKER_FLOAT).encode() in before
    result = purge_database(store.engine, utcnow() - timedelta(days=180))
    assert result.predictions == 50 and result.wal_truncated is True
    after = _file_bytes(store.engine)
    assert MARKER_TEXT.encode() not in after
    assert repr(MARKER_FLOAT).encode() not in after
    assert store.count_predictions() == 3  # the recent rows are intact


def _age(path: Path, days: float) -> None:
    t = time.time() - days * 86400
    os.utime(path, (t, t))


def test_spill_files_older_than_the_cutoff_are_deleted(
    tmp_path: Path, make_record: RecordFactory
) -> None:
    spill = tmp_path / "spill"
    spill.mkdir()
    line = encode(make_record())
    orphan = Segment.create(spill, 1)
    orphan.append(line)
    orphan.close()  # its writer died: an orphan nobody holds
    live = Segment.create(spill, 2)  # held (flock) by a live writer
    live.append(line)
    corrupt = Segment.create(spill, 3)
    corrupt.append(b"torn")
    corrupt.close()
    corrupt_path = quarantine(corrupt.path)
    young = Segment.create(spill, 4)
    young.append(line)
    young.close()
    old_rejected = RejectedFiles(spill, max_bytes=1 << 30, max_age_seconds=1e9, tag="a")
    old_rejected_path = old_rejected.add([make_record()])
    new_rejected = RejectedFiles(spill, max_bytes=1 << 30, max_age_seconds=1e9, tag="b")
    new_rejected_path = new_rejected.add([make_record()])
    for path in (orphan.path, live.path, corrupt_path, old_rejected_path):
        _age(path, 200)
    try:
        journal, n_rejected = purge_files(spill, utcnow() - timedelta(days=180))
        assert (journal, n_rejected) == (2, 1)
        assert not orphan.path.exists() and not corrupt_path.exists()
        assert not old_rejected_path.exists()
        assert live.path.exists() and young.path.exists() and new_rejected_path.exists()
    finally:
        live.close()


def test_purge_files_of_a_missing_folder_is_nothing(tmp_path: Path) -> None:
    assert purge_files(tmp_path / "absent", utcnow()) == (0, 0)
