"""Storage: SQLAlchemy models, Alembic migrations, repositories and the prediction-record writer.

Knows nothing of HTTP or Prometheus; reports to the api layer through plain callbacks.
"""

from .db import make_engine, normalize_url, session_factory
from .errors import (
    Conflict,
    DatabaseUnavailable,
    NotFound,
    StorageError,
    Unrecordable,
    WriterFull,
    is_connection_error,
)
from .locks import advisory_lock, try_advisory_lock
from .migrate import migrate
from .records import PredictionRecord, new_id, utcnow
from .repositories import Store, insert_many
from .writer import RecordWriter

__all__ = [
    "Conflict",
    "DatabaseUnavailable",
    "NotFound",
    "PredictionRecord",
    "RecordWriter",
    "StorageError",
    "Store",
    "Unrecordable",
    "WriterFull",
    "advisory_lock",
    "insert_many",
    "is_connection_error",
    "make_engine",
    "migrate",
    "new_id",
    "normalize_url",
    "session_factory",
    "try_advisory_lock",
    "utcnow",
]
