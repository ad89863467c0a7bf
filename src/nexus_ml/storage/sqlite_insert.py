"""SQLite fast path of the prediction insert: one multi-row ``INSERT … RETURNING`` per chunk.

Through SQLAlchemy's ORM insert (insertmanyvalues) a record cost ≈ 84 µs of the writer's CPU on
SQLite (benchmarks/bench_writer_rate.py --sqlite), and that writer runs in the serving
process, beside the requests, under the same GIL (issue 16, docs/benchmarks.md "A leaner
request"). Most of it was per-value work in the generic execution context and the standard
library's JSON float formatting of the features. Here each row is built once as a tuple, with
the columns' own bind processors (so a time is stored as the same text, and a naive time is
refused as before), the two JSON columns written by orjson, and each chunk goes out as one
statement through ``Connection.exec_driver_sql``, so the driver's errors are wrapped as
SQLAlchemy's exactly as on the ORM path (``IntegrityError``, ``OperationalError``, ...).

The JSON text may differ from ``json.dumps``' in form (no spaces, ``1e-7`` for ``1e-07``,
UTF-8 instead of ``\\u`` escapes), never in value: every read parses it. What orjson would
write differently or refuses (a NaN or an infinity, which it writes as ``null``; a key that
is not text; an integer past 64 bits; text that is not UTF-8; a type it does not know) is
written by the column's own processor, as before.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any

import orjson
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from .journal import all_finite
from .models import Prediction
from .records import PredictionRecord

# Rows per statement: 12 parameters each, well under SQLite's 32,766 per statement.
CHUNK = 500
_JSON_COLUMNS = frozenset({"features", "probabilities"})

Processor = Callable[[Any], Any]


@functools.lru_cache(maxsize=16)
def _plan(dialect: Dialect, columns: tuple[str, ...]) -> tuple[list[tuple[int, Processor]], str]:
    """(column index, processor) for every column that has one, and the row's placeholders."""
    table = Prediction.__table__
    procs: list[tuple[int, Processor]] = []
    for i, name in enumerate(columns):
        proc = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if name in _JSON_COLUMNS and proc is not None:
            procs.append((i, functools.partial(_json_text, fallback=proc)))
        elif proc is not None:
            procs.append((i, proc))
    return procs, "(" + ", ".join("?" * len(columns)) + ")"


def _json_text(value: Any, fallback: Processor) -> Any:
    if value is not None and all_finite(value):
        try:
            return orjson.dumps(value).decode()
        except orjson.JSONEncodeError:
            pass
    return fallback(value)


@functools.lru_cache(maxsize=4)
def _statement(columns: tuple[str, ...], rows: int, placeholders: str) -> str:
    # Column names from the record's own fields and "?" placeholders: no value is in the text.
    names = ", ".join(columns)
    values = ", ".join([placeholders] * rows)
    return (
        f"INSERT INTO predictions ({names}) VALUES {values} "  # noqa: S608
        "ON CONFLICT (id) DO NOTHING RETURNING id"
    )


def sqlite_insert(session: Session, records: Sequence[PredictionRecord]) -> list[str]:
    """Insert ``records`` (distinct ids) unless stored; returns the ids actually inserted.

    A value refused before it is sent (a naive time, a value JSON cannot hold) raises
    ``StatementError`` as SQLAlchemy would; the driver's refusals arrive wrapped by SQLAlchemy.
    """
    columns = tuple(records[0].to_row())
    connection = session.connection()
    procs, placeholders = _plan(connection.dialect, columns)
    values = attrgetter(*columns)
    params: list[Any] = []
    try:
        for record in records:
            row = list(values(record))
            for i, proc in procs:
                row[i] = proc(row[i])
            params.extend(row)
    except Exception as exc:  # what SQLAlchemy raises for a value its processors refuse
        raise StatementError(
            f"({type(exc).__name__}) {exc}", "INSERT INTO predictions", None, exc
        ) from exc
    width = len(columns)
    inserted: list[str] = []
    for start in range(0, len(records), CHUNK):
        rows = min(CHUNK, len(records) - start)
        sql = _statement(columns, rows, placeholders)
        chunk = tuple(params[start * width : (start + rows) * width])
        inserted += connection.exec_driver_sql(sql, chunk).scalars().all()
    return inserted
