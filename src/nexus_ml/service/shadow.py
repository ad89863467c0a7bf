"""Shadow challengers: every instance the champion answers is scored again by the version in
``SHADOW``, off the answer path.

Decision (docs/operations.md, "Shadow challengers"): the champion's request only *offers* its
records to a bounded in-memory queue — one dictionary lookup when the model has no challenger,
an append when it has — and answers at once. A task on the same event loop scores the queue
one instance at a time, yielding to the loop after each, so a request arriving meanwhile
waits for at most one challenger prediction (tens of microseconds), never for the backlog.
A thread was the other choice: it would compete for the GIL for up to the interpreter's switch
interval (5 ms) at a time while the loop has a request to answer. When the queue holds
``ML_SHADOW_QUEUE_SIZE`` instances, new ones are dropped and counted
(``ml_shadow_dropped_total``) rather than let the challenger slow the champion; a stop drops
what is still queued (shadow scores are evidence for a comparison, not answers anyone waits
for).

Each score is stored through the same record writer as the answers, with role
``challenger``, the champion's request id and creation time, and the id
:func:`~nexus_ml.storage.records.challenger_id` derives from the champion's prediction id,
by which feedback on the champion's prediction labels it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence

from nexus_ml.ml.predictor import NotEvaluable
from nexus_ml.ml.registry import LoadedModel, ModelRegistry
from nexus_ml.ml.schema import ValidationProblem, check_instance
from nexus_ml.monitoring.metrics import Metrics
from nexus_ml.service.recording import prediction_record
from nexus_ml.storage import errors as storage
from nexus_ml.storage.records import CHALLENGER, PredictionRecord, challenger_id
from nexus_ml.storage.writer import RecordWriter

log = logging.getLogger("nexus_ml.shadow")
_perf = time.perf_counter


class ShadowScorer:
    """Scores the champion's answered instances with the model's shadow challenger."""

    def __init__(
        self,
        *,
        models: ModelRegistry,
        writer: RecordWriter,
        metrics: Metrics,
        max_pending: int,
    ) -> None:
        self._models = models
        self._writer = writer
        self._metrics = metrics
        self.max_pending = max_pending
        self._queue: deque[tuple[LoadedModel, Sequence[PredictionRecord]]] = deque()
        self._pending = 0  # instances in the queue
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0

    @property
    def pending(self) -> int:
        """Instances waiting to be scored."""
        return self._pending

    # -- the answer path ----------------------------------------------------------------------

    def offer(self, champion: LoadedModel, records: Sequence[PredictionRecord]) -> None:
        """Queue the champion's accepted ``records`` for its challenger, if it has one; O(1)."""
        shadow = self._models.shadow(champion.name)
        if shadow is None or self._wake is None:
            return
        n = len(records)
        if self._pending + n > self.max_pending:
            self._metrics.shadow_dropped_total.labels(shadow.name, shadow.version).inc(n)
            return
        self._queue.append((shadow, records))
        self._pending += n
        if threading.get_ident() == self._loop_thread:
            self._wake.set()
        elif self._loop is not None:  # a sync caller in a worker thread
            with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                self._loop.call_soon_threadsafe(self._wake.set)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start scoring on the running loop."""
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(wake), name="shadow-scorer")

    async def stop(self) -> None:
        """Stop scoring; what is still queued is dropped (and counted)."""
        task, self._task = self._task, None
        self._wake = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while self._queue:
            shadow, records = self._queue.popleft()
            self._metrics.shadow_dropped_total.labels(shadow.name, shadow.version).inc(len(records))
        self._pending = 0

    async def drain(self) -> None:
        """Wait until the queue is empty (tests and benchmarks: no sleeps)."""
        while self._pending:
            await asyncio.sleep(0.001)

    # -- scoring ------------------------------------------------------------------------------

    async def _run(self, wake: asyncio.Event) -> None:
        while True:
            await wake.wait()
            wake.clear()
            while self._queue:
                shadow, records = self._queue.popleft()
                for record in records:
                    self._pending -= 1
                    try:
                        self._score(shadow, record)
                    except Exception:  # a challenger's bug must never stop the scorer
                        log.exception(
                            "shadow scoring failed",
                            extra={"model": shadow.name, "version": shadow.version},
                        )
                    # One instance at a time: a request waiting on the loop goes next.
                    await asyncio.sleep(0)

    def _score(self, shadow: LoadedModel, champion: PredictionRecord) -> None:
        labels = (shadow.name, shadow.version)
        m = self._metrics
        start = _perf()
        try:
            row, _warnings = check_instance(shadow.schema, champion.features)
            index, probabilities = shadow.predictor.predict_one(row)
        except (ValidationProblem, NotEvaluable):
            m.shadow_refused_total.labels(*labels).inc()
            return
        latency = _perf() - start
        record = prediction_record(
            shadow,
            sent=champion.features,
            index=index,
            probabilities=probabilities,
            latency=latency,
            # The champion's time: both scores of one request fall in the same windows.
            at=champion.created_at,
            request_id=champion.request_id,
            role=CHALLENGER,
            record_id=challenger_id(champion.id),
        )
        try:
            self._writer.submit(record)
        except storage.WriterFull:
            m.shadow_dropped_total.labels(*labels).inc()
            return
        except storage.Unrecordable:
            m.shadow_refused_total.labels(*labels).inc()
            return
        m.shadow_predictions_total.labels(*labels).inc()
        m.shadow_prediction_duration_seconds.labels(*labels).observe(latency)
