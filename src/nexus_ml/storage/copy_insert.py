"""PostgreSQL fast path of the prediction insert: COPY into a staging table, then one INSERT.

``INSERT … VALUES`` through SQLAlchemy costs ~100 µs of client CPU per record (parameter
processing of twelve columns, two of them JSON); ``COPY`` streams the rows with psycopg's
adapters instead (measured side by side in benchmarks/bench_writer_rate.py). The rows go to a
temporary table of this connection (emptied at each commit) and from there into
``predictions`` with ``ON CONFLICT (id, created_at) DO NOTHING RETURNING id`` (the partitioned
table's key, migration 0005; a replayed record repeats its time): the same idempotence and the
same "which were new" answer as the plain INSERT, in the caller's transaction (so the
aggregates of exactly those rows commit with them). psycopg's errors are raised wrapped as
SQLAlchemy's (``IntegrityError``, ``DataError``), so the writer and callers see the same errors
on both paths; times go through the same ``UTCDateTime`` check (a naive time is refused).
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from .models import UTCDateTime
from .records import PredictionRecord

STAGE = "nexus_predictions_stage"
_JSON_COLUMNS = frozenset({"features", "probabilities"})
_UTC = UTCDateTime()


def copy_insert(session: Session, records: Sequence[PredictionRecord]) -> list[str]:
    """Insert ``records`` (distinct ids) unless stored; returns the ids actually inserted.

    Raises what SQLAlchemy would for the same refusal (``IntegrityError``, ``DataError``, ...),
    wrapping psycopg's error, so callers see one family of errors whatever the path.
    """
    try:
        return _copy_insert(session, records)
    except psycopg.Error as exc:
        raise DBAPIError.instance(None, None, exc, psycopg.Error) from exc


def _copy_insert(session: Session, records: Sequence[PredictionRecord]) -> list[str]:
    columns = list(records[0].to_row())
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    stage = sql.Identifier(STAGE)
    connection = session.connection()
    dialect = connection.dialect
    dbapi = connection.connection.dbapi_connection
    if dbapi is None:  # pragma: no cover - a checked-out connection always has one
        raise RuntimeError("no DBAPI connection")
    with dbapi.cursor() as cur:  # type: ignore[attr-defined]
        # Per connection, created once (a pool reuses connections); LIKE copies the column
        # types and NOT NULLs, so a value predictions refuses is refused here as well.
        cur.execute(
            sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE predictions) ON COMMIT DELETE ROWS"
            ).format(stage)
        )
        with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(stage, names)) as copy:
            for record in records:
                row = record.to_row()
                row["created_at"] = _UTC.process_bind_param(record.created_at, dialect)
                copy.write_row([Jsonb(row[c]) if c in _JSON_COLUMNS else row[c] for c in columns])
        cur.execute(
            sql.SQL(
                "INSERT INTO predictions ({names}) SELECT {names} FROM {stage} "
                "ON CONFLICT (id, created_at) DO NOTHING RETURNING id"
            ).format(names=names, stage=stage)
        )
        inserted = [r[0] for r in cur.fetchall()]
        # Emptied now as well as at commit: a second batch in one transaction starts clean.
        cur.execute(sql.SQL("TRUNCATE {}").format(stage))
        return inserted
