"""Retention: delete patient data (raw predictions, their feedback, spilled records) past a cutoff.

Purged: ``predictions`` rows (features, probabilities) made before the cutoff and the
``feedback`` of those predictions; in the spill folder, journal segments, quarantined
(``.corrupt``) segments and rejected-record files last written before the cutoff. Kept:
aggregates, drift/quality results, the audit log, promotion reports and training runs: none
holds a feature value or an identifier of a patient (docs/operations.md, "Retention").

SQLite: the engine sets ``PRAGMA secure_delete=ON`` (db.py), so freed pages are zeroed, and
the purge ends with a WAL checkpoint that truncates the WAL, whose old frames still hold the
rows. PostgreSQL: whole day partitions are dropped (their files are unlinked); rows before
the cutoff in the partition holding it are deleted and stay as dead tuples in that file until
the next day's purge drops it (see partitions.py).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, text

from . import partitions
from .journal import CORRUPT_SUFFIX, SUFFIX, claim, list_segments
from .journal import PREFIX as SEGMENT_PREFIX
from .models import Feedback, Prediction
from .rejected import PREFIX as REJECTED_PREFIX


@dataclass(kw_only=True)
class PurgeResult:
    """What one purge removed (counts only: never a value)."""

    cutoff: datetime
    predictions: int = 0
    feedback: int = 0
    partitions_dropped: int = 0
    # SQLite: False if a reader kept the WAL from being checkpointed in full (retried next run).
    wal_truncated: bool | None = None
    journal_files: int = 0
    rejected_files: int = 0

    def counts(self) -> dict[str, Any]:
        """The result as plain JSON-ready values (for the audit entry and the CLI)."""
        out = asdict(self)
        out["cutoff"] = self.cutoff.isoformat()
        return out


def purge_database(engine: Engine, cutoff: datetime) -> PurgeResult:
    """Delete predictions made before ``cutoff`` and their feedback (one transaction)."""
    result = PurgeResult(cutoff=cutoff)
    with engine.begin() as conn:
        # Feedback first: it has no foreign key to the partitioned predictions (migration
        # 0005), it carries its prediction's time instead, so an orphan left by a label that
        # raced a purge is found by the next one.
        result.feedback = conn.execute(
            delete(Feedback).where(Feedback.prediction_created_at < cutoff)
        ).rowcount
        if partitions.is_partitioned(conn):
            result.partitions_dropped, result.predictions = partitions.drop_days_before(
                conn, cutoff
            )
        # Only the partition holding the cutoff (and default) is left to delete from.
        result.predictions += conn.execute(
            delete(Prediction).where(Prediction.created_at < cutoff)
        ).rowcount
    if engine.dialect.name == "sqlite":
        result.wal_truncated = _truncate_wal(engine)
    return result


def _truncate_wal(engine: Engine) -> bool:
    """Copy the WAL into the database file and truncate it (its frames hold deleted rows)."""
    with engine.connect() as conn:
        busy, _log, _done = conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)")).one()
        return not busy


def purge_files(spill_dir: Path, cutoff: datetime) -> tuple[int, int]:
    """Delete this host's spill files last written before ``cutoff``: (journal, rejected).

    A journal segment another process still holds (its flock) is live and left alone; its
    records reach the database and the next purge there.
    """
    limit = cutoff.timestamp()
    journal = rejected = 0
    for path in list_segments(spill_dir):
        if _older(path, limit):
            with claim(path) as fd:
                if fd is not None:
                    journal += _unlink(path)
    for path in _files(spill_dir):
        name = path.name
        if not _older(path, limit):
            continue
        if name.startswith(SEGMENT_PREFIX) and name.endswith(CORRUPT_SUFFIX):
            journal += _unlink(path)  # quarantined: damaged, never replayed, still patient data
        elif name.startswith(REJECTED_PREFIX) and name.endswith(SUFFIX):
            rejected += _unlink(path)
    return journal, rejected


def _files(directory: Path) -> list[Path]:
    try:
        return [directory / name for name in os.listdir(directory)]
    except FileNotFoundError:
        return []


def _older(path: Path, limit: float) -> bool:
    try:
        return path.stat().st_mtime < limit
    except FileNotFoundError:
        return False


def _unlink(path: Path) -> int:
    try:
        path.unlink()
    except FileNotFoundError:  # replayed or pruned by another worker meanwhile
        return 0
    return 1
