"""Batched, lossless writing of prediction records off the request path.

Guarantees
----------
* ``submit`` is synchronous, O(1) and never touches the database: it encodes the record, appends
  one line to this process's journal segment with a single ``write(2)`` (no fsync), and appends
  the record to an in-memory queue. Once ``submit`` returns, the record is in the kernel's page
  cache, so it survives the worker being SIGKILLed (not a power loss: that is the price of no
  fsync per record). It is thread-safe (sync endpoints call it from the thread pool).
  ``submit_many`` takes a batch all or none: every record is encoded first, and the lines go
  out in one ``write(2)``. A record no store can hold (NaN, infinity, text that is not UTF-8)
  raises ``Unrecordable`` and nothing of its batch is accepted.
* A background task inserts the queue in batches (``batch_size`` records, at least every
  ``flush_seconds``) in a worker thread, so the event loop never waits on the database. Inserts
  are idempotent on ``id``, so anything may be retried or replayed without duplicates.
* A journal segment is deleted only when every record in it is committed. Segments rotate after
  each successful flush and every ``segment_max_records`` records.
* Database down: batches are retried with capped, jittered exponential backoff; every failure is
  reported through ``on_error``; ``submit`` keeps working.
* Database refusing data (``IntegrityError``, ``DataError``: see ``errors.reject_reason``): no
  backoff, no retry of the same batch. It is split in halves until every record the database
  takes is stored and each one it refuses is alone; those are kept in a capped ``rejected-*``
  file (see ``rejected.py``) and counted through ``on_rejected``. One bad record costs about
  ``2 log2(batch_size)`` extra inserts and never holds back the others. An error of no known
  kind is retried with backoff ``POISON_AFTER`` times before the batch is split the same way.
* Memory bound: at most ``max_pending`` records are held in memory, plus one batch being replayed
  from disk. Beyond that, records live only in their journal segment (the spill buffer) and are
  replayed from disk once the database answers again. Disk use is bounded only by the disk; when
  neither memory nor disk can take a record, ``submit`` raises ``WriterFull`` (answer 503)
  instead of accepting a record it might lose.
* Replay: at start, after each recovery and every ``scan_seconds``, segments of dead processes
  (and of earlier incarnations of this one) are replayed oldest first. A segment is replayed only
  by the process that obtains its flock, so two workers never replay the same one at once.
* ``stop(timeout)`` drains what it can in ``timeout``; whatever is not committed stays in the
  journal, and the next process to start replays it. Nothing is dropped.
* Records hold patient data: only counts and error types are logged or reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import ErrorKind, RejectReason, Unrecordable, WriterFull, error_kind
from .journal import Segment, encode
from .records import PredictionRecord
from .rejected import RejectedFiles
from .replay import InsertFn, JournalReplay

log = logging.getLogger(__name__)

# A batch refused this many times in a row (not for connection reasons) is split record by record.
POISON_AFTER = 3
# Each retry delay is spread over ±20 %, so that workers cut off together do not retry together.
JITTER = 0.2


def backoff_delay(failures: int, initial: float, maximum: float, rand: float) -> float:
    """Seconds to wait after ``failures`` failed attempts in a row (``rand`` uniform in [0, 1)).

    ``initial`` doubled once per failure, capped at ``maximum``, then spread by ±``JITTER``.
    """
    try:
        delay = min(maximum, math.ldexp(initial, failures))
    except OverflowError:  # a long outage: 2**failures is past any float
        delay = maximum
    return delay * (1 - JITTER + 2 * JITTER * rand)


class RecordWriter(JournalReplay):
    """Writes PredictionRecords to the database in batches, via a crash-safe disk journal."""

    def __init__(
        self,
        insert: InsertFn,
        spill_dir: Path,
        *,
        batch_size: int = 1000,
        flush_seconds: float = 0.5,
        max_pending: int = 50_000,
        segment_max_records: int = 10_000,
        backoff_initial: float = 0.25,
        backoff_max: float = 30.0,
        scan_seconds: float = 30.0,
        insert_timeout: float = 15.0,
        rejected_max_bytes: int = 100 * 1024 * 1024,
        rejected_max_age_seconds: float = 30 * 86400.0,
        on_flush: Callable[[int, float], None] | None = None,
        on_error: Callable[[str, ErrorKind], None] | None = None,
        on_pending: Callable[[int, int], None] | None = None,
        on_rejected: Callable[[str, RejectReason, int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._insert = insert
        self.spill_dir = Path(spill_dir)
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.max_pending = max_pending
        self.segment_max_records = segment_max_records
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.scan_seconds = scan_seconds
        self.insert_timeout = insert_timeout
        self._on_flush = on_flush
        self._on_error = on_error
        self._on_pending = on_pending
        self._on_rejected = on_rejected
        self._clock = clock  # decides when orphans are looked for; tests move it by hand

        self._lock = threading.Lock()  # guards the queue, the active segment and counters
        self._pending: deque[tuple[PredictionRecord, Segment | None]] = deque()
        self._active: Segment | None = None
        self._segments: list[Segment] = []  # own sealed segments with records not committed
        self._seq = 0
        self._disk_only = 0
        # The pending gauge is refreshed per flush cycle, not per record (a gauge write on the
        # hot path costs more than the append). It must never read 0 while records are held,
        # or "pending == 0" would wrongly mean "all committed": the first record after a
        # zero report refreshes it at once.
        self._reported_empty = True
        self._failures = 0
        self._other_failures = 0  # consecutive non-connection failures
        self._tag = secrets.token_hex(2)  # two writers in one process never share a file name
        self._rejected = RejectedFiles(
            self.spill_dir,
            max_bytes=rejected_max_bytes,
            max_age_seconds=rejected_max_age_seconds,
            tag=self._tag,
        )
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Any, insert: InsertFn, **kwargs: Any) -> RecordWriter:
        """A writer configured from ``Settings`` (batch size, flush period, memory bound)."""
        return cls(
            insert,
            settings.spill_dir,
            batch_size=settings.writer_batch_size,
            flush_seconds=settings.writer_flush_seconds,
            max_pending=settings.writer_max_pending,
            insert_timeout=settings.writer_insert_timeout_seconds,
            rejected_max_bytes=settings.writer_rejected_max_bytes,
            rejected_max_age_seconds=settings.writer_rejected_max_age_seconds,
            **kwargs,
        )

    @property
    def pending(self) -> int:
        """Records waiting in memory."""
        return len(self._pending)

    @property
    def disk_only(self) -> int:
        """Records of this process held only in the journal (memory was full)."""
        return self._disk_only

    # Set by start(): nothing reads them before (a submit, flush or cycle needs a started
    # writer). The asyncio primitives are made there because they belong to the loop that
    # first uses them.
    _next_scan: float
    _loop: asyncio.AbstractEventLoop
    _loop_thread: int
    _wake: asyncio.Event
    _stop: asyncio.Event
    _flush_lock: asyncio.Lock
    _retry: asyncio.Event

    # -- hot path -----------------------------------------------------------------------------

    def submit(self, record: PredictionRecord) -> None:
        """Accept a record (journal + memory); O(1), never touches the database."""
        self.submit_many((record,))

    def submit_many(self, records: Sequence[PredictionRecord]) -> None:
        """Accept records all or none (journal + memory); never touches the database.

        Raises ``Unrecordable`` if any record cannot be encoded for every store, ``WriterFull``
        if neither memory nor the journal can take them all; in both cases none is accepted.
        """
        try:
            lines = [encode(record) for record in records]
        except ValueError as exc:  # NaN/infinity, or UnicodeEncodeError (a ValueError)
            raise Unrecordable(type(exc).__name__) from None
        n = len(lines)
        with self._lock:
            seg = self._active
            if seg is None:
                raise WriterFull("record writer is not running")
            room = self.max_pending - len(self._pending)
            if seg.broken and room < n:
                raise WriterFull("record writer: memory full and journal not writable")
            if seg.broken:
                seg = None
            elif not seg.append(b"".join(lines), n):  # one line: join returns it as is
                seg = None
                self._report_error("journal", "other")
                if room < n:
                    raise WriterFull("record writer: memory full and journal not writable")
            in_memory = min(room, n)  # all n without a journal line: room was checked above
            for record in records[:in_memory]:
                self._pending.append((record, seg))
            if seg is not None:
                seg.in_memory += in_memory
                seg.spilled += n - in_memory
                self._disk_only += n - in_memory
                if seg.written >= self.segment_max_records:
                    self._rotate_locked()
            full = len(self._pending) >= self.batch_size > len(self._pending) - in_memory
            report, self._reported_empty = self._reported_empty, False
        if report:
            self._report_pending()
        if full:
            self._wake_flusher()

    def _wake_flusher(self) -> None:
        # Only reached from a submit accepted by a started writer: start() set the loop.
        if threading.get_ident() == self._loop_thread:
            self._wake.set()
        else:
            with contextlib.suppress(RuntimeError):  # loop already closed during shutdown
                self._loop.call_soon_threadsafe(self._wake.set)

    def _new_segment(self) -> Segment:
        self._seq += 1  # a number lost to a failed create is harmless: names need only increase
        return Segment.create(self.spill_dir, self._seq, self._tag)

    def _rotate_locked(self) -> None:
        """Seal the active segment and open a new one (caller holds ``_lock``)."""
        try:
            new = self._new_segment()
        except OSError:
            # Disk full or gone: keep the old segment; submit falls back to memory only.
            self._report_error("journal", "other")
            return
        old, self._active = self._active, new
        if old is not None:
            old.sealed = True
            if old.outstanding:
                self._segments.append(old)
            else:
                old.delete()

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the journal and start flushing; leftover segments replay in the background."""
        if self._task is not None:
            return
        self.spill_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # patient data
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake, self._stop, self._flush_lock = asyncio.Event(), asyncio.Event(), asyncio.Lock()
        self._retry = asyncio.Event()
        with self._lock:
            self._active = self._new_segment()
        self._next_scan = -math.inf  # replay leftovers on the first cycle
        self._task = asyncio.create_task(self._run(), name="record-writer")

    async def flush(self, timeout: float | None = None) -> bool:
        """Write everything pending now; True if nothing of ours is left uncommitted."""
        if self._task is None:
            raise RuntimeError("RecordWriter.flush() before start()")
        try:
            async with asyncio.timeout(timeout):
                ok = await self._cycle(own_only=True)
        except TimeoutError:
            return False
        return ok and not self._pending and not self._disk_only

    async def stop(self, timeout: float) -> int:
        """Drain for at most ``timeout`` seconds, then close; returns records left on disk."""
        task, self._task = self._task, None
        if task is None:
            return 0
        self._stop.set()
        self._wake.set()  # the flusher may be waiting out its period
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await task  # cancelled at the deadline (an insert in its thread is abandoned)
                # Own records only: orphans wait for the next process, not this one's deadline.
                while self._pending or self._disk_only:
                    if not await self._cycle(own_only=True):
                        await asyncio.sleep(self._retry_delay())
        return self._close()

    def _close(self) -> int:
        with self._lock:
            left = len(self._pending) + self._disk_only
            segments = [seg for seg in (*self._segments, self._active) if seg is not None]
            self._active, self._segments = None, []
            for seg in segments:
                if seg.outstanding:
                    seg.close()  # releases the flock: an orphan that the next start replays
                else:
                    seg.delete()
            self._pending.clear()
            self._disk_only = 0
        if left:
            log.warning("record writer stopped with %d records left in the journal", left)
        return left

    # -- background flushing ------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if await self._cycle():
                    await self._wait_for_work()
                    continue
            except Exception:  # a bug must not end the flusher; the journal still holds it all
                log.exception("record writer cycle failed")
                self._report_error("cycle", "other")
            await self._backoff(self._retry_delay())

    async def _wait_for_work(self) -> None:
        # A full batch can be left over from arrivals during the cycle that never crossed the
        # batch size (so nobody set the wake): it goes at once, not after the period.
        if len(self._pending) < self.batch_size:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_seconds):
                    await self._wake.wait()
        self._wake.clear()

    def _retry_delay(self) -> float:
        rand = random.random()  # noqa: S311 - jitter, not cryptographic
        return backoff_delay(self._failures, self.backoff_initial, self.backoff_max, rand)

    def retry_now(self) -> None:
        """Cut a backoff short: the database is known to answer again (call on the loop)."""
        if self._failures:
            self._retry.set()

    async def _backoff(self, delay: float) -> None:
        # Wait out the backoff unless stopped, or told the database is back
        # (a readiness ping that succeeded), so recovery does not wait up to
        # backoff_max after the outage ends.
        self._retry.clear()
        waiters = [
            asyncio.ensure_future(self._stop.wait()),
            asyncio.ensure_future(self._retry.wait()),
        ]
        try:
            await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _cycle(self, *, own_only: bool = False) -> bool:
        """Flush memory, then replay own spill and (when due, not own_only) orphans.

        False on a failure.
        """
        async with self._flush_lock:
            with self._lock:
                if self._active is not None and self._active.broken:
                    self._rotate_locked()  # retried here, not per submit: the disk may be full
            # Bounded: under constant load the cycle must end so that replay gets its turn.
            for _ in range(-(-len(self._pending) // self.batch_size)):
                if not await self._flush_batch():
                    return False
            with self._lock:
                if self._active is not None and self._active.written:
                    self._rotate_locked()
            for seg in [s for s in self._segments if s.spilled]:
                if not await self._replay_own(seg):
                    return False
            if not own_only and self._clock() >= self._next_scan:
                if not await self._replay_orphans():
                    return False
                await asyncio.to_thread(self._prune_rejected)  # the age limit, without refusals
                self._next_scan = self._clock() + self.scan_seconds
            self._report_pending()
            return True

    async def _write(self, records: Sequence[PredictionRecord], operation: str) -> bool:
        start = time.perf_counter()
        try:
            # Bounded: an insert stuck on a frozen connection must count as an
            # outage (and be retried), not wait unreported. The stuck thread may
            # still finish later; inserts are idempotent, so that is harmless.
            written = await self._insert_bounded(records)
        except Exception as exc:
            kind = error_kind(exc)
            # The type name only: driver messages can echo the parameters (patient data).
            log.warning(
                "record writer: %s of %d records failed (%s, %s, attempt %d)",
                operation, len(records), kind, type(exc).__name__, self._failures + 1,
            )  # fmt: skip
            self._report_error(operation, kind)
            # The database judged the values: retrying cannot help and must not hold back the
            # records queued behind them. Split the batch now. If that fails, the database went
            # away while splitting: an outage, which (as every kind but "other") restarts the
            # count of unexplained refusals below.
            if kind == "data" and await self._isolate(records, operation):
                return True
            self._failures += 1
            self._other_failures = self._other_failures + 1 if kind == "other" else 0
            self._report_pending()
            # The same batch kept being refused for no known reason: the records the database
            # refuses alone are set aside instead of blocking every later one (a successful
            # split resets both counters through _succeeded).
            return self._other_failures >= POISON_AFTER and await self._isolate(records, operation)
        self._succeeded(written, time.perf_counter() - start)
        return True

    async def _insert_bounded(self, records: Sequence[PredictionRecord]) -> int:
        async with asyncio.timeout(self.insert_timeout):
            return await asyncio.to_thread(self._insert, records)

    def _succeeded(self, written: int, seconds: float) -> None:
        self._other_failures = 0
        if self._failures:
            log.info("record writer: database back after %d failed attempts", self._failures)
            self._failures = 0
            self._next_scan = -math.inf  # the database is back: look for orphans at once
        self._callback(self._on_flush, written, seconds)

    async def _flush_batch(self) -> bool:
        with self._lock:
            # Never empty: _cycle calls this only as often as the queue it found holds batches.
            batch = [self._pending[i] for i in range(min(self.batch_size, len(self._pending)))]
        if not await self._write([record for record, _ in batch], "insert"):
            return False
        with self._lock:
            # Only the flusher pops from the left, so these are exactly the batch's entries.
            for _ in batch:
                self._pending.popleft()
            touched = {id(seg): seg for _, seg in batch if seg is not None and not seg.closed}
            for _, seg in batch:
                if seg is not None and not seg.closed:
                    seg.in_memory -= 1
            for seg in touched.values():
                if seg.sealed and not seg.outstanding:
                    seg.delete()
                    self._segments.remove(seg)
        return True

    # -- reporting ----------------------------------------------------------------------------

    def _report_error(self, operation: str, kind: ErrorKind) -> None:
        self._callback(self._on_error, operation, kind)

    def _report_rejected(self, model: str, reason: RejectReason, count: int) -> None:
        self._callback(self._on_rejected, model, reason, count)

    def _report_pending(self) -> None:
        # Read and report under the lock: a flusher reporting 0 must not overwrite the
        # report of a record submitted after it read the queue.
        with self._lock:
            memory, disk = len(self._pending), self._disk_only
            self._reported_empty = memory == 0 and disk == 0
            self._callback(self._on_pending, memory, disk)

    @staticmethod
    def _callback(fn: Callable[..., None] | None, *args: Any) -> None:
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:  # a metrics bug must not stop the writer
            log.exception("record writer callback failed")
