"""What CLI commands that change a model share: the actor and the audited governance service."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nexus_ml.config import Settings
    from nexus_ml.service.governance import Governance


def cli_actor() -> str:
    """``cli:<os user>``: who ran the command, as the audit log records it."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (a bare container)
        user = "unknown"
    return f"cli:{user}"[:64]


@contextmanager
def governance(settings: Settings) -> Iterator[Governance]:
    """The governance service over the configured models and database (migrated first); the
    engine is disposed of on exit, so a command leaves no connection open."""
    from nexus_ml.service.governance import Governance
    from nexus_ml.storage.db import make_engine
    from nexus_ml.storage.migrate import migrate
    from nexus_ml.storage.repositories import Store

    store = Store(make_engine(settings.resolved_database_url))
    try:
        migrate(store.engine)  # idempotent; the service does the same at start
        yield Governance(model_path=settings.model_path, store=store)
    finally:
        store.engine.dispose()
