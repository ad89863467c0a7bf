"""Storage errors, and the one place that decides what counts as "the database is down"."""

from __future__ import annotations

import functools
import inspect
import sqlite3
from collections.abc import Callable
from typing import Literal, ParamSpec, TypeVar

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


class Unrecordable(StorageError):
    """A record no store can hold as it is (a NaN or infinite number, text that is not UTF-8)."""


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


# What a failed write means for the writer: wait for the database (connection), set the
# refused records aside (data), or retry a few times before deciding (other).
ErrorKind = Literal["connection", "data", "other"]
# Why the database refused one record: a constraint, a value it cannot hold, or neither.
RejectReason = Literal["integrity", "data", "other"]

_INTEGRITY_ERRORS: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.IntegrityError,
    sqlite3.IntegrityError,
)
_DATA_ERRORS: tuple[type[BaseException], ...] = (sqlalchemy.exc.DataError, sqlite3.DataError)
if psycopg is not None:
    _INTEGRITY_ERRORS += (psycopg.IntegrityError,)
    _DATA_ERRORS += (psycopg.DataError,)


def reject_reason(exc: BaseException) -> RejectReason | None:
    """Why the database refused the values themselves (retrying cannot help), else None.

    Both stores say so by class: SQLite ``IntegrityError`` (NOT NULL, e.g. a NaN it stores as
    NULL), PostgreSQL ``DataError`` (NUL in text, text longer than its column, NaN in JSON) and
    ``IntegrityError``. A value refused by SQLAlchemy before it was sent (a naive datetime)
    is a ``StatementError`` that is not a driver error: data too.
    """
    if is_connection_error(exc):
        return None
    if isinstance(exc, _INTEGRITY_ERRORS):
        return "integrity"
    if isinstance(exc, _DATA_ERRORS):
        return "data"
    if isinstance(exc, sqlalchemy.exc.StatementError) and not isinstance(
        exc, sqlalchemy.exc.DBAPIError
    ):
        return "data"
    return None


def error_kind(exc: BaseException) -> ErrorKind:
    """Classify a failed write: the database is unreachable, refuses the data, or other."""
    if isinstance(exc, TimeoutError) or is_connection_error(exc):
        return "connection"
    return "other" if reject_reason(exc) is None else "data"


C = TypeVar("C", bound=type)
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


def translating_errors(cls: C) -> C:
    """Class decorator: ``translate_errors`` on every public method the class itself defines.

    One line per repository instead of one per method, and the methods stay undecorated in the
    class body, where the mutation tests (mutmut skips decorated functions) can reach them.
    """
    for name, value in list(vars(cls).items()):
        if not name.startswith("_") and inspect.isfunction(value):
            setattr(cls, name, translate_errors(value))
    return cls
