"""Engine and session construction for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

# An outage must fail a request quickly instead of parking a worker on a TCP handshake.
PG_CONNECT_TIMEOUT_SECONDS = 3
SQLITE_BUSY_TIMEOUT_MS = 5000


def normalize_url(url: str | URL) -> URL:
    """Parse ``url``; bare ``postgres(ql)://`` URLs get the installed psycopg 3 driver."""
    if isinstance(url, str) and url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def sqlite_path(url: str | URL) -> Path | None:
    """The database file of a SQLite URL; None for PostgreSQL or in-memory SQLite."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL lets readers (drift, monitoring) run while the writer inserts.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # With WAL, NORMAL is crash-safe for the database; only the last commits may roll back
        # on power loss, and the writer's journal covers those.
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Deleted rows are overwritten with zeros instead of left readable in free pages:
        # retention must remove patient data from the file, not only from query results.
        cursor.execute("PRAGMA secure_delete=ON")
    finally:
        cursor.close()


def make_engine(
    url: str | URL, *, connect_args: Mapping[str, Any] | None = None, **kwargs: Any
) -> Engine:
    """Engine for ``url`` with the per-dialect settings this service relies on."""
    parsed = normalize_url(url)
    args: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_path(parsed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        # The writer inserts from a worker thread; sessions never share a connection across threads.
        args["check_same_thread"] = False
        args.update(connect_args or {})
        engine = create_engine(parsed, connect_args=args, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    args["connect_timeout"] = PG_CONNECT_TIMEOUT_SECONDS
    # A partition that freezes an open connection (no RST, no FIN) would
    # otherwise leave a query waiting for the kernel's ~15 minute retransmission
    # limit: keepalives notice an idle dead peer, tcp_user_timeout a busy one.
    args.update(
        keepalives=1,
        keepalives_idle=10,
        keepalives_interval=5,
        keepalives_count=3,
        tcp_user_timeout=15_000,
    )
    args.update(connect_args or {})
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_timeout", 10)
    return create_engine(parsed, connect_args=args, **kwargs)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Session factory bound to ``engine``; objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)
