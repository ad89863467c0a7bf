"""PostgreSQL: ``predictions`` is RANGE-partitioned by ``created_at``, one partition per UTC day.

Why daily (docs/operations.md, "Retention"): retention then drops whole files a day at a time,
so rows deleted one by one (only in the partition holding the cutoff) stay in a file for at
most a day before that file is dropped too; the monitoring and drift windows (an hour to a
week) touch one to eight partitions; at the default 180-day retention there are about 190.

Partitions are named ``predictions_pYYYYMMDD`` (this module is the only one that makes them,
so the name is the bound). ``predictions_default`` takes any row no day partition covers, so
an insert never fails because the service was down when its day should have been created;
:func:`ensure_partitions` moves such rows into their day partition when it creates it.
SQLite has no partitions: every function here is a no-op there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Connection, Engine, func, select, table, text

from .locks import advisory_lock

PARENT = "predictions"
DEFAULT_PARTITION = "predictions_default"
PREFIX = "predictions_p"
_NAME = re.compile(r"predictions_p(\d{8})")
# Days created ahead of today: a service down for less than this never sends rows to default.
DAYS_AHEAD = 7
LOCK_KEY = "nexus-ml:predictions-partitions"
# DDL on the partitioned table waits this long for the writer's short inserts, then gives up
# (and the next run retries) rather than queue every insert behind it.
LOCK_TIMEOUT = "5s"


def is_partition_name(name: str | None) -> bool:
    """True for the tables this module creates (hidden from Alembic's autogenerate compare)."""
    return name is not None and (name == DEFAULT_PARTITION or _NAME.fullmatch(name) is not None)


def include_name(name: str | None, type_: str, _parent: object) -> bool:
    """Alembic ``include_name``: compare every object but these run-time partitions."""
    return not (type_ == "table" and is_partition_name(name))


def partition_name(day: date) -> str:
    """The partition holding the rows made on UTC ``day``."""
    return f"{PREFIX}{day:%Y%m%d}"


def day_of(name: str) -> date | None:
    """The UTC day a day partition holds, or None for any other table."""
    match = _NAME.fullmatch(name)
    return None if match is None else datetime.strptime(match[1], "%Y%m%d").date()


def _start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def is_partitioned(conn: Connection) -> bool:
    """True if ``predictions`` is a partitioned table (PostgreSQL after migration 0005)."""
    if conn.dialect.name != "postgresql":
        return False
    kind = conn.execute(
        text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:t)"), {"t": PARENT}
    ).scalar()
    return kind == "p"


def day_partitions(conn: Connection) -> dict[date, str]:
    """Every day partition of ``predictions``, by day."""
    names = conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(:t)"
        ),
        {"t": PARENT},
    ).scalars()
    found = {}
    for name in names:
        day = day_of(name)
        if day is not None:
            found[day] = name
    return found


def create_day(conn: Connection, day: date) -> bool:
    """Create the partition of ``day`` (moving its rows out of default); False if it exists."""
    name = partition_name(day)
    if conn.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar() is not None:
        return False
    lo, hi = _start(day), _start(day + timedelta(days=1))
    conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    # PostgreSQL refuses a new partition while default holds rows in its range: take them
    # out, create the partition, put them back through the parent (one transaction).
    conn.execute(
        text(
            "CREATE TEMP TABLE moving ON COMMIT DROP AS WITH d AS (DELETE FROM "
            "predictions_default WHERE created_at >= :lo AND created_at < :hi RETURNING *) "
            "SELECT * FROM d"
        ),
        {"lo": lo, "hi": hi},
    )
    conn.execute(
        text(
            f"CREATE TABLE {name} PARTITION OF {PARENT} "
            f"FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')"
        )
    )
    conn.execute(text("INSERT INTO predictions SELECT * FROM moving"))
    conn.execute(text("DROP TABLE moving"))
    return True


def create_days(conn: Connection, days: Iterable[date]) -> int:
    """Create the partitions of ``days`` that do not exist; returns how many were made."""
    return sum(create_day(conn, day) for day in sorted(set(days)))


def ensure_partitions(engine: Engine, *, today: date | None = None) -> int:
    """Create today's partition and the next DAYS_AHEAD days' (cluster-wide lock; no-op on
    SQLite); returns how many were created."""
    if engine.dialect.name != "postgresql":
        return 0
    today = today or datetime.now(UTC).date()
    created = 0
    with advisory_lock(engine, LOCK_KEY):
        for offset in range(DAYS_AHEAD + 1):
            # One transaction per day: a lock timeout on one day keeps the others made.
            with engine.begin() as conn:
                if not is_partitioned(conn):
                    return created
                created += create_day(conn, today + timedelta(days=offset))
    return created


def drop_days_before(conn: Connection, cutoff: datetime) -> tuple[int, int]:
    """Drop every day partition wholly older than ``cutoff``; returns (partitions, rows)."""
    dropped = rows = 0
    for day, name in sorted(day_partitions(conn).items()):
        if _start(day + timedelta(days=1)) > cutoff:
            continue
        conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        # Counted for the purge report; one sequential read of a file about to be dropped.
        rows += int(conn.execute(select(func.count()).select_from(table(name))).scalar_one())
        conn.execute(text(f"DROP TABLE {name}"))
        dropped += 1
    return dropped, rows
