"""``Nexus``: everything one running service holds, built by the app factory.

The api layer is the only place where ``ml``, ``monitoring`` and ``storage``
meet: this module wires the record writer's callbacks into metrics, and owns
the background jobs (model reload watcher, alert evaluation, model quality).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_args

from prometheus_client import REGISTRY, CollectorRegistry

from nexus_ml.api.auth import KeyStore
from nexus_ml.api.observe import ModelObserver
from nexus_ml.config import Settings
from nexus_ml.ml.registry import LoadedModel, ModelRegistry, Refusal
from nexus_ml.monitoring.alerting import ActiveAlert, AlertEvaluator, publish_firing
from nexus_ml.monitoring.decorators import default_metrics
from nexus_ml.monitoring.exposition import multiproc_families
from nexus_ml.monitoring.measurements import MetricHistory
from nexus_ml.monitoring.metrics import Metrics, build_metrics
from nexus_ml.monitoring.system import SystemCollector
from nexus_ml.storage.db import make_engine
from nexus_ml.storage.errors import DatabaseUnavailable, RejectReason
from nexus_ml.storage.migrate import migrate
from nexus_ml.storage.repositories import Store
from nexus_ml.storage.writer import RecordWriter
from nexus_ml.thresholds import Thresholds, apply_valid_overrides, load_thresholds

log = logging.getLogger("nexus_ml.api")
T = TypeVar("T")

# Operations whose connection-error series must exist at 0 from the start, so
# that the first error after a restart is an *increase* the alert can see.
DB_OPERATIONS = ("insert", "replay", "query")
MODEL_WATCH_SECONDS = 5.0
READY_PING_SECONDS = 1.0


@dataclass
class Nexus:
    """The service's parts; ``build`` creates them, ``start``/``stop`` run them."""

    settings: Settings
    registry: CollectorRegistry
    metrics: Metrics
    keys: KeyStore
    thresholds: Thresholds
    base_thresholds: Thresholds
    store: Store
    models: ModelRegistry
    collector: SystemCollector
    evaluator: AlertEvaluator
    history: MetricHistory
    writer: RecordWriter = field(init=False)
    trainer: Any = field(init=False)
    quality_job: Any = field(init=False)
    multiproc_dir: str | None = None
    started_at: float = 0.0
    draining: bool = False
    db_ok: bool | None = None
    alerts: list[ActiveAlert] = field(default_factory=list)
    _observers: dict[tuple[str, str], ModelObserver] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _published_alerts: set[tuple[str, str]] = field(default_factory=set)
    # Database calls run here, not in the loop's default executor, so stop() can wait for
    # the ones still running before it disposes of the engine (a cancelled job's thread
    # goes on; its connection would come back to a discarded pool and leak).
    _db_threads: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(
            max_workers=min(32, (os.cpu_count() or 1) + 4), thread_name_prefix="nexus-db"
        )
    )
    _refused_overrides: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings, registry: CollectorRegistry) -> Nexus:
        """Create (not start) every part from ``settings``."""
        from nexus_ml.api.quality_job import QualityJob
        from nexus_ml.api.trainer import Trainer

        # The process-default metrics are shared with the decorators that
        # teams put on their own code; a fresh registry gets its own set.
        metrics = default_metrics() if registry is REGISTRY else build_metrics(registry)
        multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        thresholds = load_thresholds(settings)
        nexus = cls(
            settings=settings,
            registry=registry,
            metrics=metrics,
            keys=KeyStore(settings.parsed_api_keys()),
            thresholds=thresholds,
            base_thresholds=thresholds,
            store=Store(make_engine(settings.resolved_database_url)),
            models=ModelRegistry(settings.model_path, on_refused=_count_refusal(metrics)),
            collector=SystemCollector(
                metrics,
                interval=settings.system_interval_seconds,
                disk_path=Path(settings.data_dir),
                lock_dir=Path(multiproc_dir) if multiproc_dir else None,
            ),
            evaluator=AlertEvaluator(thresholds),
            history=MetricHistory(),
            multiproc_dir=multiproc_dir,
        )
        nexus.writer = nexus._make_writer()
        nexus.trainer = Trainer(nexus)
        nexus.quality_job = QualityJob(nexus)
        for op in DB_OPERATIONS:
            metrics.db_operation_errors_total.labels(op, "connection")
        return nexus

    @property
    def engine(self) -> Any:
        """The SQLAlchemy engine."""
        return self.store.engine

    # -- wiring ------------------------------------------------------------

    def count_error(self, component: str, error_type: str) -> None:
        """Increment ml_errors_total{component, error_type}."""
        self.metrics.errors_total.labels(component, error_type).inc()

    def _make_writer(self) -> RecordWriter:
        m = self.metrics
        written = m.db_records_written_total
        duration = m.db_operation_duration_seconds.labels("insert_predictions")

        def on_flush(n_written: int, seconds: float) -> None:
            written.inc(n_written)
            duration.observe(seconds)
            self.db_ok = True

        def on_error(operation: str, error_type: str) -> None:
            m.db_operation_errors_total.labels(operation, error_type).inc()
            self.count_error("database", error_type)
            if error_type == "connection":
                self.db_ok = False

        def on_pending(n_memory: int, n_disk: int) -> None:
            m.db_records_pending.set(n_memory + n_disk)
            m.db_records_spilled.set(n_disk)

        def on_rejected(model: str, reason: str, count: int) -> None:
            m.db_records_rejected_total.labels(model, reason).inc(count)

        return RecordWriter.from_settings(
            self.settings,
            self.store.insert_predictions,
            on_flush=on_flush,
            on_error=on_error,
            on_pending=on_pending,
            on_rejected=on_rejected,
        )

    def observer(self, loaded: LoadedModel) -> ModelObserver:
        """The cached observer of this model version."""
        key = (loaded.name, loaded.version)
        obs = self._observers.get(key)
        if obs is None:
            obs = self._observers[key] = ModelObserver(self.metrics, loaded)
        return obs

    def export_model(self, loaded: LoadedModel) -> None:
        """Publish a (newly) loaded model version's static metrics; retire the one it replaces."""
        m = self.metrics
        for other in list(self._observers):
            if other[0] == loaded.name and other[1] != loaded.version:
                self._retire_version(*other)
        m.model_info.labels(loaded.name, loaded.version).set(1)
        md = loaded.metadata
        tm = md.get("training_metrics", {})
        if "holdout_accuracy" in tm:
            m.model_holdout_accuracy.labels(loaded.name, loaded.version).set(tm["holdout_accuracy"])
        m.model_features_count.labels(loaded.name).set(len(loaded.schema.names))
        if "n_samples" in tm:
            m.model_training_samples.labels(loaded.name).set(tm["n_samples"])
        created = md.get("created_at")
        if created:
            from datetime import datetime

            ts = datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
            m.model_last_training_timestamp_seconds.labels(loaded.name).set(ts)
        # Series TrainingFailure reads with increase(): present at 0 from the start.
        for outcome in ("success", "failure"):
            m.model_training_runs_total.labels(loaded.name, outcome)
        for reason in get_args(RejectReason):
            m.db_records_rejected_total.labels(loaded.name, reason)
        self.observer(loaded)

    def _retire_version(self, name: str, version: str) -> None:
        """Stop exporting the per-version series of a version this worker no longer serves."""
        m = self.metrics
        del self._observers[(name, version)]
        if self.multiproc_dir:
            # prometheus_client cannot delete a label set from the worker files: 0 tells the
            # exposition that this worker stopped serving it, and a version no live worker
            # serves is left out of /metrics with every per-version gauge (VERSIONED_GAUGES).
            m.model_info.labels(name, version).set(0)
            return
        for gauge in (m.model_info, m.model_holdout_accuracy):
            with contextlib.suppress(KeyError):
                gauge.remove(name, version)

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Migrate, load models, start the writer, collector and background jobs."""
        self.started_at = time.time()
        try:
            await asyncio.to_thread(migrate, self.engine)
            await asyncio.to_thread(self.refresh_thresholds)
            self.db_ok = True
        except Exception as exc:  # the DB may be down at start: serve anyway, records spill
            self.db_ok = False
            self.count_error("database", type(exc).__name__)
            log.warning(
                "database migration failed at start", extra={"error_type": type(exc).__name__}
            )
        # Each refused bundle is logged and counted by the registry's on_refused.
        await asyncio.to_thread(self.models.load_all)
        for loaded in self.models.all():
            self.export_model(loaded)
        await self.writer.start()
        await self.collector.start()
        s = self.settings
        self._every(MODEL_WATCH_SECONDS, self._watch_models, "model-watcher")
        self._every(s.alert_interval_seconds, self._evaluate_alerts, "alert-evaluator")
        self._every(s.drift_interval_seconds, self.run_quality_job, "model-quality", delay=True)

    async def stop(self) -> None:
        """Stop jobs, then drain the writer within its half of the grace period.

        The server spends the other half finishing in-flight requests before the
        lifespan ends, so the whole shutdown stays within ML_SHUTDOWN_GRACE_SECONDS.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.5, self.settings.shutdown_grace_seconds / 2 - 0.25)
        self.draining = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                # A training run is not worth a late exit: its run row stays
                # 'running' and the version on disk is whatever it finished.
                await self.trainer.wait_idle()
        await self.collector.stop()
        left = await self.writer.stop(timeout=max(0.0, deadline - loop.time()))
        if left:
            log.warning("records left in the journal for the next start", extra={"count": left})
        # Database calls of cancelled jobs may still run: let them return their connections
        # (within the grace) before the pool is disposed of.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.1, deadline - loop.time())):
                await asyncio.to_thread(self._db_threads.shutdown, wait=True)
        self.engine.dispose()

    def _every(
        self, seconds: float, job: Callable[[], Awaitable[Any]], name: str, *, delay: bool = False
    ) -> None:
        async def loop() -> None:
            if delay:
                await asyncio.sleep(seconds)
            while True:
                try:
                    await job()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a job failing must not stop the service
                    self.count_error("scheduler", type(exc).__name__)
                    log.warning(
                        "background job failed",
                        extra={"component": name, "error_type": type(exc).__name__},
                    )
                await asyncio.sleep(seconds)

        self._tasks.append(asyncio.create_task(loop(), name=name))

    async def _watch_models(self) -> None:
        before = {m.name: m.version for m in self.models.all()}
        await asyncio.to_thread(self.models.refresh)
        for loaded in self.models.all():
            if before.get(loaded.name) != loaded.version:
                self.export_model(loaded)

    async def in_db_thread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking database call in the service's database threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db_threads, functools.partial(fn, *args, **kwargs))

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking store call in a thread; an unreachable database becomes a 503.

        Every such failure is counted, so an outage seen only by reads (feedback,
        training runs, monitoring) still fires DatabaseConnectionErrors.
        """
        from nexus_ml.api.errors import ApiError

        try:
            return await self.in_db_thread(fn, *args, **kwargs)
        except DatabaseUnavailable:
            self.metrics.db_operation_errors_total.labels("query", "connection").inc()
            self.count_error("database", "connection")
            self.db_ok = False
            raise ApiError(503, "database unavailable: retry later") from None

    async def run_quality_job(self) -> dict[str, Any]:
        """Drift, window quality and accuracy now (one worker at a time)."""
        # This worker's queued records belong in the window it is about to read.
        await self.writer.flush(timeout=10.0)
        return await self.db(self.quality_job.run)

    def apply_thresholds(self, thresholds: Thresholds) -> None:
        """Use ``thresholds`` everywhere in this process (evaluator, drift decisions)."""
        if thresholds == self.thresholds:
            return
        self.thresholds = thresholds
        self.evaluator.set_thresholds(thresholds)
        self.quality_job.reset()  # drift detectors hold the drift limit they were fitted with

    def refresh_thresholds(self) -> None:
        """Re-read the overrides stored by ``PUT /config/thresholds`` (by any worker).

        Blocking (one small query): call in a thread.
        """
        overrides = {k: r.value for k, r in self.store.threshold_overrides().items()}
        updated, refused = apply_valid_overrides(self.base_thresholds, overrides, source="database")
        if refused and refused != self._refused_overrides:
            # Key names only when they are known keys (a bounded set); never values.
            known = [k for k in refused if k in Thresholds.model_fields]
            log.warning(
                "stored threshold overrides refused, the others apply: %s",
                ", ".join(known) or "unknown keys",
                extra={"error_type": "ThresholdError", "count": len(refused)},
            )
        self._refused_overrides = refused
        self.apply_thresholds(updated)

    def collect_families(self) -> list[Any]:
        """Metric families of this service (merged across workers in multiprocess mode)."""
        if self.multiproc_dir:
            return multiproc_families(self.multiproc_dir)
        return list(self.registry.collect())

    async def _evaluate_alerts(self) -> None:
        # Every worker evaluates the same aggregated metrics, so every worker's
        # /health shows the same alerts without electing one.
        now = time.time()
        with contextlib.suppress(DatabaseUnavailable):
            await self.in_db_thread(self.refresh_thresholds)
        families = await asyncio.to_thread(self.collect_families)
        self.history.record(families, now)
        measurements = self.history.measurements(
            self.models.names(), now, thresholds=self.thresholds
        )
        self.alerts = self.evaluator.evaluate(measurements)
        self._published_alerts = publish_firing(
            self.metrics.alerts_active, self.alerts, self._published_alerts
        )

    # -- health ------------------------------------------------------------

    async def check_database(self) -> dict[str, Any]:
        """Ping the database (bounded by the engine's connect timeout)."""
        try:
            # Below a readiness probe's usual timeout: in a partition the
            # connect timeout alone (3 s) would make every replica unready.
            async with asyncio.timeout(READY_PING_SECONDS):
                seconds = await self.in_db_thread(self.store.ping)
        except (DatabaseUnavailable, TimeoutError):
            self.db_ok = False
            return {"status": "unreachable"}
        self.db_ok = True
        self.writer.retry_now()  # records waiting out a backoff can go now
        return {"status": "ok", "latency_seconds": round(seconds, 6)}

    def _system_now(self) -> dict[str, float]:
        # peek(), not sample(): a /health call must not move the collector's CPU
        # baseline (the next published CPU figure would cover only milliseconds).
        snap = self.collector.peek()
        return {
            "cpu_percent": snap.cpu_percent,
            "memory_ratio": snap.memory_ratio,
            "disk_ratio": snap.disk_ratio,
        }

    async def readiness(self) -> dict[str, Any]:
        """Ready = models loaded and not draining; the database and refused bundles degrade."""
        db = await self.check_database()
        models = self.models.names()
        # Model, version and the reason enum only: the message (field names) goes to the log.
        refused = [
            {"model": r.model, "version": r.version, "reason": r.reason}
            for r in self.models.refused()
        ]
        ready = bool(models) and not self.draining
        healthy = db["status"] == "ok" and not refused
        status = "not_ready" if not ready else ("ok" if healthy else "degraded")
        return {
            "ready": ready,
            "status": status,
            "checks": {
                "models": {
                    "status": "ok" if models else "none_loaded",
                    "loaded": models,
                    "refused": refused,
                },
                "database": db,
                "shutting_down": self.draining,
                "records_pending": self.writer.pending + self.writer.disk_only,
            },
        }

    async def health_report(self) -> dict[str, Any]:
        """Readiness plus system resources and active alerts."""
        report = await self.readiness()
        report["checks"]["system"] = await asyncio.to_thread(self._system_now)
        firing = [a.to_dict() for a in self.alerts if a.state == "firing"]
        report["alerts"] = firing
        if firing and report["status"] == "ok":
            report["status"] = "degraded"
        report["uptime_seconds"] = round(time.time() - self.started_at, 3)
        return report


def _count_refusal(metrics: Metrics) -> Callable[[Refusal], None]:
    """Count each refused bundle once: by model and reason, and as a model error."""

    def count(refusal: Refusal) -> None:
        metrics.model_load_failures_total.labels(refusal.model, refusal.reason).inc()
        metrics.errors_total.labels("model", "BundleRefused").inc()

    return count
