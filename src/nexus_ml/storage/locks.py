"""Cross-process locks: PostgreSQL advisory locks, or flock on a file beside the SQLite database."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, text

from .db import sqlite_path
from .errors import DatabaseUnavailable, is_connection_error

# In-memory SQLite lives in one process, so a process-local lock is the whole story there.
_MEMORY_LOCKS: dict[str, threading.Lock] = {}
_MEMORY_GUARD = threading.Lock()


def lock_id(key: str) -> int:
    """Stable signed 64-bit id for ``key`` (PostgreSQL advisory locks take a bigint)."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _lock_file(engine: Engine, key: str) -> Path | None:
    path = sqlite_path(engine.url)
    if path is None:
        return None
    safe = hashlib.blake2b(key.encode(), digest_size=6).hexdigest()
    return path.with_name(f"{path.name}.{safe}.lock")


@contextlib.contextmanager
def file_lock(path: Path, *, blocking: bool) -> Iterator[bool]:
    """flock ``path`` (created if missing); yields whether the lock was obtained."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            got = True
        except BlockingIOError:
            got = False
        # The kernel drops the lock when fd closes, including when the process dies.
        yield got
    finally:
        os.close(fd)


@contextlib.contextmanager
def _pg_lock(engine: Engine, key: str, *, blocking: bool) -> Iterator[bool]:
    ident = lock_id(key)
    try:
        conn = engine.connect()
    except Exception as exc:
        if is_connection_error(exc):
            raise DatabaseUnavailable(str(exc)) from exc
        raise
    got = False
    try:
        try:
            if blocking:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": ident})
                got = True
            else:
                got = bool(
                    conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ident}).scalar()
                )
            # Session-level lock: it outlives this transaction; commit so the connection is idle.
            conn.commit()
        except Exception as exc:
            if is_connection_error(exc):
                raise DatabaseUnavailable(str(exc)) from exc
            raise
        yield got
    finally:
        try:
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ident})
                conn.commit()
        except Exception:
            # A pooled connection must never keep the lock: discard it; the server then drops it.
            conn.invalidate()
        finally:
            conn.close()


@contextlib.contextmanager
def _lock(engine: Engine, key: str, *, blocking: bool) -> Iterator[bool]:
    if engine.dialect.name == "postgresql":
        with _pg_lock(engine, key, blocking=blocking) as got:
            yield got
        return
    path = _lock_file(engine, key)
    if path is not None:
        with file_lock(path, blocking=blocking) as got:
            yield got
        return
    with _MEMORY_GUARD:
        lock = _MEMORY_LOCKS.setdefault(key, threading.Lock())
    got = lock.acquire(blocking=blocking)
    try:
        yield got
    finally:
        if got:
            lock.release()


@contextlib.contextmanager
def try_advisory_lock(engine: Engine, key: str) -> Iterator[bool]:
    """Try to take the cluster-wide lock ``key``; yields True if this process now holds it."""
    with _lock(engine, key, blocking=False) as got:
        yield got


@contextlib.contextmanager
def advisory_lock(engine: Engine, key: str) -> Iterator[None]:
    """Wait for the cluster-wide lock ``key`` and hold it for the block."""
    with _lock(engine, key, blocking=True):
        yield
