"""Replaying journal segments and isolating records the database refuses (RecordWriter's half)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from .errors import is_connection_error
from .journal import Segment, claim, list_segments, quarantine, read_chunks, write_rejected
from .records import PredictionRecord

log = logging.getLogger("nexus_ml.storage.writer")

ErrorType = Literal["connection", "other"]
InsertFn = Callable[[Sequence[PredictionRecord]], int]


class JournalReplay:
    """Mixin for RecordWriter: everything that reads segments back into the database."""

    spill_dir: Path
    batch_size: int
    _insert: InsertFn
    _lock: threading.Lock
    _segments: list[Segment]
    _disk_only: int
    _other_failures: int
    _on_flush: Callable[[int, float], None] | None

    async def _write(self, records: Sequence[PredictionRecord], operation: str) -> bool:
        raise NotImplementedError

    def _report_error(self, operation: str, kind: ErrorType) -> None:
        raise NotImplementedError

    @staticmethod
    def _callback(fn: Callable[..., None] | None, *args: Any) -> None:
        raise NotImplementedError

    async def _isolate(self, records: Sequence[PredictionRecord], operation: str) -> bool:
        """Insert one by one; keep the refused records in a rejected-*.jsonl file."""

        def insert_each() -> tuple[int, list[PredictionRecord], bool]:
            written, refused = 0, list[PredictionRecord]()
            for record in records:
                try:
                    written += self._insert([record])
                except Exception as exc:
                    if is_connection_error(exc):
                        return written, refused, False
                    refused.append(record)
            return written, refused, True

        start = time.perf_counter()
        written, refused, done = await asyncio.to_thread(insert_each)
        if not done:
            return False
        self._other_failures = 0
        if refused:
            path = write_rejected(self.spill_dir, refused)
            log.error(
                "record writer: database refused %d records, kept in %s", len(refused), path.name
            )
        self._callback(self._on_flush, written, time.perf_counter() - start)
        return True

    async def _replay_own(self, seg: Segment) -> bool:
        """Replay a sealed segment of ours whose spilled records exist only on disk."""
        # Our descriptor is write-only; the flock it holds still keeps other replayers away.
        fd = os.open(seg.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if not await self._replay_fd(fd, seg.path):
                return False
        finally:
            os.close(fd)
        with self._lock:
            self._disk_only -= seg.spilled
            # Every line is committed, including those still queued in memory (their
            # re-insertion later is a no-op), so the segment is done.
            seg.spilled = seg.in_memory = 0
            if seg.path.exists():
                seg.delete()
            else:
                seg.close()  # quarantined by _replay_fd
            self._segments.remove(seg)
        return True

    async def _replay_orphans(self) -> bool:
        for path in list_segments(self.spill_dir):
            # Our own segments are skipped by claim() too: we hold their flock on another fd.
            with claim(path) as fd:
                if fd is None:  # its owner is alive, or another worker is replaying it
                    continue
                if not await self._replay_fd(fd, path):
                    return False
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()  # still under our lock, so nobody claims it meanwhile
        return True

    async def _replay_fd(self, fd: int, path: Path) -> bool:
        """Insert every record of a segment, one batch in memory at a time."""
        total = damaged = 0
        for chunk, bad in read_chunks(fd, self.batch_size):
            damaged += bad
            if chunk and not await self._write(chunk, "replay"):
                return False
            total += len(chunk)
        if damaged:
            # Unparseable lines cannot be inserted, but they must not vanish either.
            target = quarantine(path)
            log.error("record writer: %d damaged journal lines kept in %s", damaged, target.name)
            self._report_error("replay", "other")
        log.info("record writer: replayed %d journaled records", total)
        return True
