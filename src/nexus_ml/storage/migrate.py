"""Programmatic Alembic upgrade, safe when several workers start at once."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from .db import make_engine
from .locks import advisory_lock

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
MIGRATE_LOCK_KEY = "nexus_ml.storage.migrate"


def alembic_config(url: str | URL | None = None) -> Config:
    """Alembic Config pointing at the packaged migrations; the URL travels in ``attributes``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # attributes, not set_main_option: the URL may hold a password and '%' needs no escaping.
        cfg.attributes["url"] = (
            url.render_as_string(hide_password=False) if isinstance(url, URL) else url
        )
    return cfg


def migrate(target: str | URL | Engine, revision: str = "head") -> None:
    """Upgrade the database to ``revision``; concurrent callers wait for each other."""
    engine = target if isinstance(target, Engine) else make_engine(target)
    try:
        # Every worker of every replica calls this at start; one upgrades, the others then
        # find the schema at head and do nothing.
        with advisory_lock(engine, MIGRATE_LOCK_KEY), engine.connect() as conn:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            conn.commit()
            if conn.dialect.name == "sqlite":
                # env.py turned it off for the table rebuilds; this pooled connection goes on.
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
    finally:
        if engine is not target:
            engine.dispose()
