"""Aggregates of the stored predictions, kept by the writer, read by the monitoring.

Two tables (models.py): ``prediction_rollups`` (fixed columns: count, latency sum and max,
confidence sum, labels and correct labels) and ``prediction_rollup_bins`` (one row per class,
latency bin and confidence bin), each per model, version and bucket. Every prediction is counted
three times: in its minute (``span_seconds=60``), its hour (``3600``) and its day (``86400``,
UTC). A window is read as its whole days from the daily rows, the hours at its edges from the
hourly rows and the minutes at their edges from the minute rows, so a read touches at most
``days + 2 × 23 + 2 × 59`` buckets per model and version whatever the table holds: an answer
costs the same on day 300 as on day 1.

Windows are whole minutes: :func:`align` widens ``[since, until)`` to the minutes that hold it,
and the answers echo the aligned window.

Writes are additive upserts (``INSERT … ON CONFLICT … DO UPDATE SET n = n + excluded.n``), the
same statement on SQLite and PostgreSQL, issued in key order so that two writers adding to the
same rows lock them in one order (no deadlock). The caller passes only the records its INSERT
actually stored (``RETURNING id``): a replayed record is not counted twice.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from . import bins
from .models import PredictionRollup, PredictionRollupBin
from .records import PredictionRecord

MINUTE, HOUR, DAY = 60, 3600, 86400
SPANS = (MINUTE, HOUR, DAY)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MINUTE = timedelta(seconds=MINUTE)

# Rows per upsert statement: bounded so that one batch of 10,000 records does not build one
# statement with hundreds of thousands of parameters (SQLite allows 32,766 per statement).
_CHUNK = 500


def floor_to(at: datetime, seconds: int) -> datetime:
    """The start of the ``seconds``-long bucket (aligned to the epoch) holding ``at``."""
    return _EPOCH + timedelta(seconds=seconds * ((at - _EPOCH) // timedelta(seconds=seconds)))


def ceil_to(at: datetime, seconds: int) -> datetime:
    """The first bucket start at or after ``at``."""
    start = floor_to(at, seconds)
    return start if start == at else start + timedelta(seconds=seconds)


def align(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    """``[since, until)`` widened to whole minutes."""
    return floor_to(since, MINUTE), ceil_to(until, MINUTE)


@dataclass(slots=True)
class WindowAggregate:
    """One model's predictions in a window, read from the aggregates."""

    count: int = 0
    latency_sum: float = 0.0
    latency_max: float | None = None
    confidence_sum: float = 0.0
    feedback: int = 0
    correct: int = 0
    class_counts: dict[str, int] = field(default_factory=dict)
    latency_bins: dict[int, int] = field(default_factory=dict)
    confidence_bins: dict[int, int] = field(default_factory=dict)

    def merge(self, other: WindowAggregate) -> None:
        """Add ``other`` into this one (for totals over several models)."""
        self.count += other.count
        self.latency_sum += other.latency_sum
        if other.latency_max is not None:
            self.latency_max = max(self.latency_max or 0.0, other.latency_max)
        self.confidence_sum += other.confidence_sum
        self.feedback += other.feedback
        self.correct += other.correct
        for c, n in other.class_counts.items():
            self.class_counts[c] = self.class_counts.get(c, 0) + n
        for mine, theirs in (
            (self.latency_bins, other.latency_bins),
            (self.confidence_bins, other.confidence_bins),
        ):
            for i, n in theirs.items():
                mine[i] = mine.get(i, 0) + n


# -- writing -----------------------------------------------------------------------------------


def rollup_rows(
    records: Iterable[PredictionRecord],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The (summary, bin) increments of ``records``, one row per key, in key order.

    Pre-aggregated per batch (issue 16: this runs in the serving process, beside the
    requests): each record is added once, to its (model, version, minute) and to its (model,
    version, minute, class, latency bin, confidence bin); the minutes are then added into
    their hours and days, and the bins spread over the three kinds, once per distinct key.
    Counts and the maximum are exact; a sum is added in another order than record by record,
    which changes it by rounding only (as batching already did).
    """
    minutes: dict[tuple[Any, ...], list[Any]] = {}
    combos: dict[tuple[Any, ...], int] = {}
    for r in records:
        minute = (r.created_at - _EPOCH) // _MINUTE
        latency, confidence = r.latency_seconds, r.confidence
        key = (r.model, r.version, minute)
        s = minutes.get(key)
        if s is None:
            minutes[key] = [1, latency, latency, confidence]
        else:
            s[0] += 1
            s[1] += latency
            if latency > s[2]:  # max(): the first of equals (or of NaNs) stays
                s[2] = latency
            s[3] += confidence
        combo = (
            *key,
            r.predicted_class,
            bins.latency_bin(latency),
            bins.confidence_bin(confidence),
        )
        combos[combo] = combos.get(combo, 0) + 1
    starts: dict[int, tuple[datetime, ...]] = {}
    for _, _, minute in minutes:
        if minute not in starts:
            at = _EPOCH + minute * _MINUTE  # floor_to(created_at, MINUTE)
            # The hour and the day hold the whole minute: flooring its start floors the record.
            starts[minute] = (at, floor_to(at, HOUR), floor_to(at, DAY))
    summary: dict[tuple[Any, ...], list[Any]] = {}
    for (model, version, minute), (n, lat_sum, lat_max, conf_sum) in minutes.items():
        for span, start in zip(SPANS, starts[minute], strict=True):
            k = (span, model, start, version)
            s = summary.get(k)
            if s is None:
                summary[k] = [n, lat_sum, lat_max, conf_sum]
            else:
                s[0] += n
                s[1] += lat_sum
                if lat_max > s[2]:
                    s[2] = lat_max
                s[3] += conf_sum
    counts: dict[tuple[Any, ...], int] = {}
    for (model, version, minute, cls, lat_bin, conf_bin), n in combos.items():
        for span, start in zip(SPANS, starts[minute], strict=True):
            for kind, value in (
                ("class", cls),
                ("latency", str(lat_bin)),
                ("confidence", str(conf_bin)),
            ):
                bin_key = (span, model, start, version, kind, value)
                counts[bin_key] = counts.get(bin_key, 0) + n
    names = ("span_seconds", "model", "bucket_start", "version")
    summary_rows = [
        {
            **dict(zip(names, key, strict=True)),
            "predictions": int(s[0]),
            "latency_sum": s[1],
            "latency_max": s[2],
            "confidence_sum": s[3],
            "feedback": 0,
            "correct": 0,
        }
        for key, s in sorted(summary.items())
    ]
    bin_rows = [
        {**dict(zip((*names, "kind", "key"), key, strict=True)), "count": n}
        for key, n in sorted(counts.items())
    ]
    return summary_rows, bin_rows


def dialect_insert(session: Session) -> Any:
    """The dialect's ``insert`` (SQLite and PostgreSQL both have ``on_conflict_do_update``)."""
    return (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert


@functools.lru_cache(maxsize=4)
def _record_upserts(dialect: str) -> tuple[Any, Any]:
    """The additive upserts of the summary and the bin rows, built once per dialect."""
    insert = (postgresql if dialect == "postgresql" else sqlite).insert
    t = PredictionRollup.__table__
    stmt = insert(t)
    ex = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=["span_seconds", "model", "bucket_start", "version"],
        set_={
            "predictions": t.c.predictions + ex.predictions,
            "latency_sum": t.c.latency_sum + ex.latency_sum,
            "latency_max": case(
                (ex.latency_max > t.c.latency_max, ex.latency_max), else_=t.c.latency_max
            ),
            "confidence_sum": t.c.confidence_sum + ex.confidence_sum,
        },
    )
    b = PredictionRollupBin.__table__
    bstmt = insert(b)
    bstmt = bstmt.on_conflict_do_update(
        index_elements=["span_seconds", "model", "bucket_start", "version", "kind", "key"],
        set_={"count": b.c.count + bstmt.excluded.count},
    )
    return stmt, bstmt


@functools.lru_cache(maxsize=16)
def _compiled(
    stmt: Any, dialect: Dialect, keys: tuple[str, ...]
) -> tuple[str, tuple[str, ...] | None, tuple[tuple[str, Any], ...]]:
    """``stmt`` compiled for ``dialect`` with ``keys`` as its values: its text, the order of
    its positional parameters (None for named ones), and the columns' bind processors."""
    compiled = stmt.compile(dialect=dialect, column_keys=list(keys))
    table = stmt.table
    procs = tuple(
        (key, proc)
        for key in keys
        if (proc := table.c[key].type.dialect_impl(dialect).bind_processor(dialect)) is not None
    )
    order = compiled.positiontup
    return str(compiled), None if order is None else tuple(order), procs


def _execute_rows(session: Session, stmt: Any, rows: list[dict[str, Any]]) -> None:
    """``stmt`` once per row, as one driver-level executemany.

    Why not ``session.execute(stmt, rows)``: SQLAlchemy builds and processes every row's
    parameters in its generic execution context (≈ 10 µs a row, and a batch of 200
    records spread over a minute has ~300 bin rows), in the serving process (issue 16). Here
    the statement is compiled once per dialect, each column's own bind processor runs once
    per distinct value (a batch holds a handful of bucket starts), and the driver's errors
    are wrapped by SQLAlchemy as before (``exec_driver_sql``).
    """
    connection = session.connection()
    sql, order, procs = _compiled(stmt, connection.dialect, tuple(rows[0]))
    for key, proc in procs:
        memo: dict[Any, Any] = {}
        for row in rows:
            value = row[key]
            done = memo.get(value, memo)
            if done is memo:
                done = memo[value] = proc(value)
            row[key] = done
    params: Any = rows if order is None else [tuple(row[k] for k in order) for row in rows]
    for i in range(0, len(params), _CHUNK):
        connection.exec_driver_sql(sql, params[i : i + _CHUNK])


def add_records(session: Session, records: Sequence[PredictionRecord]) -> None:
    """Count ``records`` (already inserted, each once) in the aggregates, in ``session``."""
    if not records:
        return
    summary_rows, bin_rows = rollup_rows(records)
    stmt, bstmt = _record_upserts(session.get_bind().dialect.name)
    _execute_rows(session, stmt, summary_rows)
    _execute_rows(session, bstmt, bin_rows)


def add_feedback(session: Session, labels: Iterable[tuple[str, str, datetime, bool]]) -> None:
    """Count labels, each ``(model, version, made_at, correct)`` of a prediction made at
    ``made_at``, in ``session``."""
    totals: dict[tuple[Any, ...], list[int]] = {}
    for model, version, made_at, correct in labels:
        for span in SPANS:
            t = totals.setdefault((span, model, floor_to(made_at, span), version), [0, 0])
            t[0] += 1
            t[1] += int(correct)
    if not totals:
        return
    rows = [
        {
            "span_seconds": span,
            "model": model,
            "bucket_start": start,
            "version": version,
            "predictions": 0,
            "latency_sum": 0.0,
            "latency_max": 0.0,
            "confidence_sum": 0.0,
            "feedback": n,
            "correct": ok,
        }
        for (span, model, start, version), (n, ok) in sorted(totals.items())
    ]
    table = PredictionRollup.__table__
    stmt = dialect_insert(session)(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=["span_seconds", "model", "bucket_start", "version"],
        set_={
            "feedback": table.c.feedback + stmt.excluded.feedback,
            "correct": table.c.correct + stmt.excluded.correct,
        },
    )
    for i in range(0, len(rows), _CHUNK):
        session.execute(stmt, rows[i : i + _CHUNK])


# -- reading -----------------------------------------------------------------------------------


def _ranges(
    since: datetime, until: datetime, spans: tuple[int, ...] = (DAY, HOUR, MINUTE)
) -> list[tuple[int, datetime, datetime]]:
    """(span, from, to) pieces covering the minute-aligned ``[since, until)``: the whole
    buckets of the longest span inside it, the edges by the shorter spans."""
    span, *shorter = spans
    if not shorter:
        return [(span, since, until)] if since < until else []
    lo, hi = ceil_to(since, span), floor_to(until, span)
    if lo >= hi:
        return _ranges(since, until, tuple(shorter))
    return [
        (span, lo, hi),
        *_ranges(since, lo, tuple(shorter)),
        *_ranges(hi, until, tuple(shorter)),
    ]


def _where(
    table: Any,
    model: str | None,
    since: datetime,
    until: datetime,
    spans: tuple[int, ...] = (DAY, HOUR, MINUTE),
) -> ColumnElement[bool]:
    pieces = [
        and_(
            table.c.span_seconds == span,
            table.c.bucket_start >= lo,
            table.c.bucket_start < hi,
        )
        for span, lo, hi in _ranges(since, until, spans)
    ]
    cond = or_(*pieces)
    return cond if model is None else and_(table.c.model == model, cond)


def window_aggregates(
    session: Session, model: str | None, since: datetime, until: datetime
) -> dict[str, WindowAggregate]:
    """Per model: the aggregates of the predictions made in the minute-aligned window."""
    since, until = align(since, until)
    t, b = PredictionRollup.__table__, PredictionRollupBin.__table__
    out: dict[str, WindowAggregate] = {}
    summary = (
        select(
            t.c.model,
            func.sum(t.c.predictions),
            func.sum(t.c.latency_sum),
            func.max(case((t.c.predictions > 0, t.c.latency_max))),
            func.sum(t.c.confidence_sum),
            func.sum(t.c.feedback),
            func.sum(t.c.correct),
        )
        .where(_where(t, model, since, until))
        .group_by(t.c.model)
    )
    for name, n, lat_sum, lat_max, conf_sum, fb, ok in session.execute(summary):
        out[name] = WindowAggregate(
            count=int(n or 0),
            latency_sum=float(lat_sum or 0.0),
            latency_max=None if lat_max is None else float(lat_max),
            confidence_sum=float(conf_sum or 0.0),
            feedback=int(fb or 0),
            correct=int(ok or 0),
        )
    dist = (
        select(b.c.model, b.c.kind, b.c.key, func.sum(b.c.count))
        .where(_where(b, model, since, until))
        .group_by(b.c.model, b.c.kind, b.c.key)
    )
    for name, kind, key, n in session.execute(dist):
        agg = out.setdefault(name, WindowAggregate())
        if kind == "class":
            agg.class_counts[key] = int(n)
        elif kind == "latency":
            agg.latency_bins[int(key)] = int(n)
        elif kind == "confidence":
            agg.confidence_bins[int(key)] = int(n)
    return out


def window_counts(
    session: Session, model: str | None, since: datetime, until: datetime, step_seconds: int
) -> list[tuple[str, datetime, int]]:
    """(model, bucket start, predictions) of the minute-aligned window, read from hourly rows
    where ``step_seconds`` is a whole number of hours, else from minute rows."""
    since, until = align(since, until)
    t = PredictionRollup.__table__
    if step_seconds % HOUR == 0:
        cond = _where(t, model, since, until, (HOUR, MINUTE))
    else:
        cond = and_(t.c.span_seconds == MINUTE, t.c.bucket_start >= since, t.c.bucket_start < until)
        if model is not None:
            cond = and_(t.c.model == model, cond)
    stmt = (
        select(t.c.model, t.c.bucket_start, func.sum(t.c.predictions))
        .where(cond, t.c.predictions > 0)
        .group_by(t.c.model, t.c.bucket_start)
    )
    return [(m, at, int(n)) for m, at, n in session.execute(stmt)]


@dataclass(slots=True)
class MinuteTotals:
    """One model's predictions in one minute, all versions (the in-process anomaly bands)."""

    predictions: int = 0
    confidence_sum: float = 0.0
    class_counts: dict[str, int] = field(default_factory=dict)


def minute_totals(
    session: Session, pieces: Sequence[tuple[datetime, datetime]]
) -> dict[str, dict[datetime, MinuteTotals]]:
    """Per model and minute: the minute rows of the minute-aligned ``pieces`` of time.

    The bands read the last hour or so and the same hour one, two and three weeks back: a few
    hundred minutes per model, whatever the table holds.
    """
    t, b = PredictionRollup.__table__, PredictionRollupBin.__table__

    def within(table: Any) -> ColumnElement[bool]:
        spans = [
            and_(table.c.bucket_start >= lo, table.c.bucket_start < hi)
            for lo, hi in (align(since, until) for since, until in pieces)
        ]
        return and_(table.c.span_seconds == MINUTE, or_(*spans))

    out: dict[str, dict[datetime, MinuteTotals]] = {}
    summary = (
        select(t.c.model, t.c.bucket_start, func.sum(t.c.predictions), func.sum(t.c.confidence_sum))
        .where(within(t))
        .group_by(t.c.model, t.c.bucket_start)
    )
    for name, at, n, conf in session.execute(summary):
        out.setdefault(name, {})[at] = MinuteTotals(int(n or 0), float(conf or 0.0))
    classes = (
        select(b.c.model, b.c.bucket_start, b.c.key, func.sum(b.c.count))
        .where(within(b), b.c.kind == "class")
        .group_by(b.c.model, b.c.bucket_start, b.c.key)
    )
    for name, at, key, n in session.execute(classes):
        minute = out.setdefault(name, {}).setdefault(at, MinuteTotals())
        minute.class_counts[key] = int(n)
    return out
