"""Storage errors, and the one place that decides what counts as "the database is down"."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import sqlalchemy.exc

try:  # psycopg is an install dependency, but a SQLite-only deployment must still import this
    import psycopg
except ImportError:  # pragma: no cover
    psycopg = None  # type: ignore[assignment]


class StorageError(Exception):
    """Base class of every error this package raises on purpose."""


class NotFound(StorageError):
    """The row asked for does not exist."""


class Conflict(StorageError):
    """The change contradicts a row that already exists (e.g. a second label)."""


class DatabaseUnavailable(StorageError):
    """The database cannot be reached (or is locked/overloaded); retrying later may succeed."""


class WriterFull(StorageError):
    """A record could be held neither in memory nor in the on-disk journal."""


_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,  # pool exhausted: as good as down for the caller
    DatabaseUnavailable,
    ConnectionError,
)
if psycopg is not None:
    _CONNECTION_ERRORS += (psycopg.OperationalError, psycopg.InterfaceError)


def is_connection_error(exc: BaseException) -> bool:
    """True if ``exc`` means the database is unreachable rather than the request being wrong."""
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, _CONNECTION_ERRORS)


P = ParamSpec("P")
R = TypeVar("R")


def translate_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator: driver connection errors become DatabaseUnavailable (callers need no drivers)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except StorageError:
            raise
        except Exception as exc:
            if is_connection_error(exc):
                # The type name only: driver messages can echo parameters (patient features).
                raise DatabaseUnavailable(type(exc).__name__) from exc
            raise

    return wrapper
