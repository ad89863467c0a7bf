"""Replaying journal segments and isolating records the database refuses (RecordWriter's half)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import ErrorKind, RejectReason, error_kind, reject_reason
from .journal import Segment, claim, list_segments, quarantine, read_chunks
from .records import PredictionRecord
from .rejected import RejectedFiles

log = logging.getLogger("nexus_ml.storage.writer")

InsertFn = Callable[[Sequence[PredictionRecord]], int]


class JournalReplay:
    """Mixin for RecordWriter: everything that reads segments back into the database."""

    spill_dir: Path
    batch_size: int
    _insert: InsertFn
    _lock: threading.Lock
    _segments: list[Segment]
    _disk_only: int
    _rejected: RejectedFiles

    async def _write(self, records: Sequence[PredictionRecord], operation: str) -> bool:
        raise NotImplementedError

    async def _insert_bounded(self, records: Sequence[PredictionRecord]) -> int:
        raise NotImplementedError

    def _succeeded(self, written: int, seconds: float) -> None:
        raise NotImplementedError

    def _report_error(self, operation: str, kind: ErrorKind) -> None:
        raise NotImplementedError

    def _report_rejected(self, model: str, reason: RejectReason, count: int) -> None:
        raise NotImplementedError

    @staticmethod
    def _callback(fn: Callable[..., None] | None, *args: Any) -> None:
        raise NotImplementedError

    async def _isolate(self, records: Sequence[PredictionRecord], operation: str) -> bool:
        """Split a refused batch in halves: store what the database takes, park what it refuses.

        Returns False (nothing parked) if the database stopped answering meanwhile, or if no
        record was judged on its values and none went in (then the fault is not in them).
        """
        start = time.perf_counter()
        written = 0
        refused: list[tuple[PredictionRecord, RejectReason]] = []
        unexplained: list[PredictionRecord] = []
        # The whole batch was just refused: begin with its halves (a stack, first half on top;
        # a batch of one has an empty first half).
        mid = len(records) // 2
        chunks = [records[mid:], records[:mid]]
        while chunks:
            chunk = chunks.pop()
            if not chunk:
                continue
            try:
                written += await self._insert_bounded(chunk)
                continue
            except Exception as exc:
                kind, reason = error_kind(exc), reject_reason(exc)
            if kind == "connection":
                self._report_error(operation, kind)
                return False
            if len(chunk) > 1:
                mid = len(chunk) // 2
                chunks += [chunk[mid:], chunk[:mid]]
            elif reason is not None:
                refused.append((chunk[0], reason))
            else:
                unexplained.append(chunk[0])
        if unexplained and not (written or refused):
            return False  # every record refused alone, none for its values: not the records
        for record in unexplained:
            # Refused alone for no known reason while others went in: once more before it is
            # set aside, in case what failed (not the record) has passed meanwhile.
            try:
                written += await self._insert_bounded([record])
            except Exception as exc:
                if error_kind(exc) == "connection":
                    self._report_error(operation, "connection")
                    return False
                refused.append((record, reject_reason(exc) or "other"))
        if refused:
            try:
                await asyncio.to_thread(self._park, [record for record, _ in refused])
            except OSError as exc:
                # Not kept anywhere else yet: the batch stays queued and is tried again.
                log.error("record writer: cannot keep refused records (%s)", type(exc).__name__)
                self._report_error("journal", "other")
                return False
            for (model, reason), count in Counter(
                (str(r.model), why) for r, why in refused
            ).items():
                self._report_rejected(model, reason, count)
        self._succeeded(written, time.perf_counter() - start)
        return True

    def _park(self, records: list[PredictionRecord]) -> None:
        path = self._rejected.add(records)
        log.error("record writer: database refused %d records, kept in %s", len(records), path.name)
        self._prune_rejected()

    def _prune_rejected(self) -> None:
        """Apply the rejected files' age and size limits (in a worker thread)."""
        try:
            pruned = self._rejected.prune()
        except OSError as exc:  # retried at the next refusal or scan; never fails a write
            log.error("record writer: cannot prune rejected records (%s)", type(exc).__name__)
            return
        if pruned.by_age or pruned.by_size:
            log.warning(
                "record writer: deleted %d rejected-record files past the age limit and %d "
                "past the size limit",
                pruned.by_age,
                pruned.by_size,
            )

    async def _replay_own(self, seg: Segment) -> bool:
        """Replay a sealed segment of ours whose spilled records exist only on disk."""
        # Our descriptor is write-only; the flock it holds still keeps other replayers away.
        # (Not inherited by a child: Python opens every descriptor non-inheritable, PEP 446.)
        fd = os.open(seg.path, os.O_RDONLY)
        try:
            if not await self._replay_fd(fd, seg.path):
                return False
        finally:
            os.close(fd)
        with self._lock:
            self._disk_only -= seg.spilled
            # Every line is committed, including those still queued in memory (their
            # re-insertion later is a no-op), so the segment is done. Closed, it is no longer
            # counted by _flush_batch; if _replay_fd quarantined it, there is nothing to unlink.
            seg.delete()
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
