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
from typing import TYPE_CHECKING, Any

from nexus_ml.api.auth import Principal
from nexus_ml.api.errors import ApiError
from nexus_ml.ml.bundle import BundleError
from nexus_ml.ml.registry import LoadedModel
from nexus_ml.ml.training import retrain_model
from nexus_ml.monitoring.decorators import monitor_training
from nexus_ml.storage.errors import DatabaseUnavailable

if TYPE_CHECKING:
    from nexus_ml.api.state import Nexus

log = logging.getLogger("nexus_ml.training")


class Trainer:
    """Starts training runs and tracks the ones running in this process."""

    def __init__(self, nexus: Nexus) -> None:
        self._nexus = nexus
        self._running: dict[str, asyncio.Task[None]] = {}

    async def start(
        self, loaded: LoadedModel, principal: Principal, *, seed: int
    ) -> dict[str, Any]:
        """Record a queued run and start it; 409 if this model is already training here."""
        name = loaded.name
        if name in self._running and not self._running[name].done():
            raise ApiError(409, f"model '{name}' is already training", "name")
        nexus = self._nexus
        store = nexus.store
        run = await nexus.db(store.create_training_run, name, principal.fingerprint)
        await nexus.db(
            store.audit, principal.fingerprint, "train", name, {"run_id": run.id, "seed": seed}
        )
        self._running[name] = asyncio.create_task(self._run(run.id, name, seed))
        return {"id": run.id, "model": name, "status": run.status, "created_at": run.created_at}

    async def wait_idle(self) -> None:
        """Wait for every running job (used at shutdown and by tests)."""
        tasks = [t for t in self._running.values() if not t.done()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, run_id: str, name: str, seed: int) -> None:
        nexus = self._nexus
        store = nexus.store
        model_path = nexus.settings.model_path
        train = monitor_training(name, metrics=nexus.metrics)(retrain_model)
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
            loaded = await asyncio.to_thread(nexus.models.reload, name)
        except BundleError as exc:
            # The registry logged and counted the refusal; the old version keeps serving.
            await _record(store, run_id, status="failed", error=_bounded_error(exc))
            return
        nexus.export_model(loaded)
        await _record(
            store, run_id, status="succeeded", version=result.version, metrics=dict(result.metrics)
        )
        log.info(
            "training succeeded", extra={"model": name, "version": result.version, "run_id": run_id}
        )


async def _record(store: Any, run_id: str, **fields: Any) -> None:
    try:
        await asyncio.to_thread(store.update_training_run, run_id, **fields)
    except DatabaseUnavailable:
        log.warning("could not record training run state", extra={"run_id": run_id})


def _bounded_error(exc: Exception) -> str:
    # The type and a short message: training errors come from our own code and
    # data-shape checks, but cap the length so nothing large lands in the table.
    return f"{type(exc).__name__}: {str(exc)[:200]}"
