"""Alembic environment: URL or connection come from ``config.attributes``, never an ini."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from nexus_ml.storage.db import make_engine
from nexus_ml.storage.models import Base
from nexus_ml.storage.partitions import include_name

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: use nexus_ml.storage.migrate(url)")
    return str(url)


def run_migrations_offline() -> None:
    """Emit SQL to stdout instead of touching a database."""
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Upgrade over the caller's connection if given, else over a fresh engine."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


def _run(connection: Connection) -> None:
    if connection.dialect.name == "sqlite":
        # Batch mode rebuilds a table by copy, drop and rename; with foreign keys on, dropping
        # the old predictions would delete every label (ON DELETE CASCADE). SQLite ignores
        # this inside a transaction: it runs before the first write. migrate() turns it back on.
        # On the driver's connection: through SQLAlchemy it would open a transaction that
        # alembic then leaves to the caller to commit.
        cursor = connection.connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=OFF")
        finally:
            cursor.close()
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
        render_as_batch=True,
        compare_type=True,
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
