"""Records the database refused for their values, kept for a human: bounded in bytes and age.

Files ``rejected-<time_ns>-<pid>-<tag>.jsonl`` in the spill folder, one journal line per record
(``journal.decode`` reads them back), mode 0600 (they hold patient features), fsynced before the
records leave the writer's queue. A writer appends to its current file until it holds
``max_bytes / PARTS``, then starts another, so a flood of refusals makes a few files, not one
per batch. ``prune`` deletes files whose last write is older than ``max_age_seconds``, then the
least recently written until all of them together hold at most ``max_bytes``. Every worker
shares the folder, and any of them may prune it.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from .journal import SUFFIX, encode
from .records import PredictionRecord

PREFIX = "rejected-"
# The cap is spread over at least this many files, so pruning the oldest frees a sixteenth of
# it rather than everything kept.
PARTS = 16


class Pruned(NamedTuple):
    """Files deleted by one ``prune``: past the age limit, then past the size limit."""

    by_age: int
    by_size: int


class RejectedFiles:
    """Append-only, capped store of refused records under ``directory``."""

    def __init__(
        self, directory: Path, *, max_bytes: int, max_age_seconds: float, tag: str = ""
    ) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.max_age_seconds = max_age_seconds
        self.part_bytes = max(1, max_bytes // PARTS)
        self._tag = tag
        self._current: Path | None = None
        self._lock = threading.Lock()

    def add(self, records: Sequence[PredictionRecord]) -> Path:
        """Append ``records`` durably (fsync) to this writer's current file; return its path."""
        # Lenient: these are the records a store refused, NaN and lone surrogates included.
        data = b"".join(encode(r, strict=False) for r in records)
        with self._lock:
            path = self._current
            size = None if path is None else _size(path)
            if path is None or size is None or size >= self.part_bytes:
                name = f"{PREFIX}{time.time_ns():020d}-{os.getpid()}-{self._tag}{SUFFIX}"
                path = self._current = self.directory / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "ab") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        return path

    def prune(self, now: float | None = None) -> Pruned:
        """Delete files past the age limit, then the oldest until the total fits the cap."""
        now = time.time() if now is None else now
        by_age = by_size = 0
        kept: list[tuple[float, int, Path]] = []
        with self._lock:
            for mtime, size, path in sorted(self._files()):
                if now - mtime > self.max_age_seconds:
                    by_age += _unlink(path)
                else:
                    kept.append((mtime, size, path))
            total = sum(size for _, size, _ in kept)
            for _, size, path in kept:
                if total <= self.max_bytes:
                    break
                by_size += _unlink(path)
                total -= size
        return Pruned(by_age, by_size)

    def files(self) -> list[Path]:
        """Every rejected-record file in the folder, least recently written first."""
        return [path for _, _, path in sorted(self._files())]

    def _files(self) -> list[tuple[float, int, Path]]:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            if name.startswith(PREFIX) and name.endswith(SUFFIX):
                path = self.directory / name
                with contextlib.suppress(FileNotFoundError):  # pruned by another worker
                    st = path.stat()
                    found.append((st.st_mtime, st.st_size, path))
        return found


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _unlink(path: Path) -> int:
    try:
        path.unlink()
    except FileNotFoundError:
        return 0
    return 1
