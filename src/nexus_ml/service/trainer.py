"""Background training runs with hot swap.

A run trains in a worker thread (scikit-learn releases the GIL in its heavy
parts, and the event loop keeps serving), saves a new bundle version beside the
old ones, then swaps it into the registry: requests in flight finish on the
model they started with, new ones get the new version. Other workers notice the
new ``CURRENT`` through the registry's reload watcher.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from nexus_ml.ml.bundle import BundleError
from nexus_ml.ml.registry import LoadedModel, ModelRegistry
from nexus_ml.ml.training import retrain_model
from nexus_ml.monitoring.decorators import monitor_training
from nexus_ml.monitoring.metrics import Metrics
from nexus_ml.service.database import Database
from nexus_ml.service.errors import Conflict, NotFound, require_id
from nexus_ml.service.publishing import ModelPublisher
from nexus_ml.storage import errors as storage
from nexus_ml.storage.errors import DatabaseUnavailable
from nexus_ml.storage.records import TrainingRunRecord
from nexus_ml.storage.repositories import Store

log = logging.getLogger("nexus_ml.training")


class Trainer:
    """Starts training runs and tracks the ones running in this process."""

    def __init__(
        self,
        *,
        db: Database,
        models: ModelRegistry,
        metrics: Metrics,
        publisher: ModelPublisher,
    ) -> None:
        self._db = db
        self._models = models
        self._metrics = metrics
        self._publisher = publisher
        self._running: dict[str, asyncio.Task[None]] = {}

    async def start(self, loaded: LoadedModel, actor: str, *, seed: int) -> TrainingRunRecord:
        """Record a queued run (audited as ``actor``) and start it; Conflict if one runs here."""
        name = loaded.name
        if name in self._running and not self._running[name].done():
            raise Conflict(f"model '{name}' is already training", "name")
        db, store = self._db, self._db.store
        run = await db.run(store.create_training_run, name, actor)
        await db.run(store.audit, actor, "train", name, {"run_id": run.id, "seed": seed})
        self._running[name] = asyncio.create_task(self._run(run.id, name, seed))
        return run

    async def get_run(self, run_id: str) -> TrainingRunRecord:
        """The stored run ``run_id``, or NotFound."""
        require_id(run_id, "run_id", "training run")
        try:
            return await self._db.run(self._db.store.get_training_run, run_id)
        except storage.NotFound:
            raise NotFound("unknown training run", "run_id") from None

    async def wait_idle(self) -> None:
        """Wait for every running job (used at shutdown and by tests)."""
        tasks = [t for t in self._running.values() if not t.done()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, run_id: str, name: str, seed: int) -> None:
        store = self._db.store
        model_path = self._models.model_path
        train = monitor_training(name, metrics=self._metrics)(retrain_model)
        try:
            await asyncio.to_thread(store.update_training_run, run_id, status="running")
            result = await asyncio.to_thread(train, model_path, name, seed=seed)
        except Exception as exc:  # the run failed: record it, never crash the service
            log.warning(
                "training failed",
                extra={"model": name, "run_id": run_id, "error_type": type(exc).__name__},
            )
            await _record(store, run_id, status="failed", error=_bounded_error(exc))
            return
        try:
            loaded = await asyncio.to_thread(self._models.reload, name)
        except BundleError as exc:
            # The registry logged and counted the refusal; the old version keeps serving.
            await _record(store, run_id, status="failed", error=_bounded_error(exc))
            return
        self._publisher.publish(loaded)
        await _record(
            store, run_id, status="succeeded", version=result.version, metrics=dict(result.metrics)
        )
        log.info(
            "training succeeded", extra={"model": name, "version": result.version, "run_id": run_id}
        )


async def _record(store: Store, run_id: str, **fields: Any) -> None:
    try:
        await asyncio.to_thread(store.update_training_run, run_id, **fields)
    except DatabaseUnavailable:
        log.warning("could not record training run state", extra={"run_id": run_id})


def _bounded_error(exc: Exception) -> str:
    # The type and a short message: training errors come from our own code and
    # data-shape checks, but cap the length so nothing large lands in the table.
    return f"{type(exc).__name__}: {str(exc)[:200]}"
