"""Per-minute request counts: added by each instance's flush, read by the anomaly bands.

One row per minute, kind and key (models.RequestRollup): an additive upsert (``count = count +
excluded.count``, the same statement on SQLite and PostgreSQL, rows in key order so that two
instances adding to the same minute lock its rows in one order), so several instances' counts
add up as the prediction rollups do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from .aggregates import align, dialect_insert
from .models import RequestRollup

# (kind, key) -> count: kind "status" (key "2xx", "5xx", …) or "latency" (key a bucket's le).
Counts = Mapping[tuple[str, str], int]
_CHUNK = 500


def add_request_counts(session: Session, minutes: Mapping[datetime, Counts]) -> int:
    """Add each minute's counts to the stored ones, in ``session``; returns the rows upserted."""
    rows = [
        {"bucket_start": at, "kind": kind, "key": key, "count": n}
        for at, counts in sorted(minutes.items())
        for (kind, key), n in sorted(counts.items())
        if n
    ]
    if not rows:
        return 0
    table = RequestRollup.__table__
    stmt = dialect_insert(session)(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=["bucket_start", "kind", "key"],
        set_={"count": table.c.count + stmt.excluded.count},
    )
    for i in range(0, len(rows), _CHUNK):
        session.execute(stmt, rows[i : i + _CHUNK])
    return len(rows)


def request_minutes(
    session: Session, pieces: Sequence[tuple[datetime, datetime]]
) -> dict[datetime, dict[tuple[str, str], int]]:
    """Per minute of the minute-aligned ``pieces``: its stored counts (a few hundred minutes
    of about ten rows each for the bands, whatever the table holds)."""
    t = RequestRollup.__table__
    spans = [
        and_(t.c.bucket_start >= lo, t.c.bucket_start < hi)
        for lo, hi in (align(since, until) for since, until in pieces)
    ]
    out: dict[datetime, dict[tuple[str, str], int]] = {}
    stmt = select(t.c.bucket_start, t.c.kind, t.c.key, t.c.count).where(or_(*spans))
    for at, kind, key, n in session.execute(stmt):
        out.setdefault(at, {})[(kind, key)] = int(n)
    return out
