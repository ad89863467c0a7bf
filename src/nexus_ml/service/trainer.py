"""Background training runs, judged by the model's promotion policy.

A run trains in a worker thread (scikit-learn releases the GIL in its heavy parts, and the
event loop keeps serving) and saves the new version beside the old ones without making it
champion. Then the policy decides (``ml.promotion``): under ``manual`` (the default) the
version waits for a person's promote; under ``auto`` the champion is re-scored on the very
holdout the candidate was scored on and the candidate is promoted only if it passes every
criterion. Either way the evaluation is stored as a promotion report and audited. A candidate
whose schema differs from the champion's is refused before anything is saved.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from nexus_ml.ml.bundle import load_bundle, load_metadata
from nexus_ml.ml.compat import check_replacement
from nexus_ml.ml.metadata import parse_metadata
from nexus_ml.ml.pointers import current_version
from nexus_ml.ml.promotion import (
    Policy,
    PolicyBook,
    accepted,
    compare,
    score_holdout,
)
from nexus_ml.ml.registry import LoadedModel, ModelRegistry
from nexus_ml.ml.segments import SegmentIndex
from nexus_ml.ml.sources import retrain_candidate, save_result
from nexus_ml.ml.training import OperatingPoint, TrainResult
from nexus_ml.monitoring.decorators import monitor_training
from nexus_ml.monitoring.metrics import Metrics
from nexus_ml.service.database import Database
from nexus_ml.service.errors import Conflict, NotFound, require_id
from nexus_ml.service.governance import Governance
from nexus_ml.service.publishing import ModelPublisher
from nexus_ml.storage import errors as storage
from nexus_ml.storage.errors import DatabaseUnavailable
from nexus_ml.storage.records import TrainingRunRecord
from nexus_ml.storage.repositories import Store

log = logging.getLogger("nexus_ml.training")

SERVICE_ACTOR = "service"  # the policy, not a person, promoted it (CONTRACT.md)


class Trainer:
    """Starts training runs and tracks the ones running in this process."""

    def __init__(
        self,
        *,
        db: Database,
        models: ModelRegistry,
        metrics: Metrics,
        publisher: ModelPublisher,
        governance: Governance,
        policies: PolicyBook,
    ) -> None:
        self._db = db
        self._models = models
        self._metrics = metrics
        self._publisher = publisher
        self._governance = governance
        self._policies = policies
        self._running: dict[str, asyncio.Task[None]] = {}

    async def start(self, loaded: LoadedModel, actor: str, *, seed: int) -> TrainingRunRecord:
        """Record a queued run (audited as ``actor``) and start it; Conflict if one runs here."""
        name = loaded.name
        if name in self._running and not self._running[name].done():
            raise Conflict(f"model '{name}' is already training", "name")
        db, store = self._db, self._db.store
        run = await db.run(store.create_training_run, name, actor)
        await db.run(store.audit, actor, "train", name, {"run_id": run.id, "seed": seed})
        self._running[name] = asyncio.create_task(self._run(run.id, name, seed, actor))
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

    async def _run(self, run_id: str, name: str, seed: int, actor: str) -> None:
        store = self._db.store
        model_path = self._models.model_path
        train = monitor_training(name, metrics=self._metrics)(retrain_candidate)
        policy = self._policies.for_model(name)
        try:
            await asyncio.to_thread(store.update_training_run, run_id, status="running")
            result, source = await asyncio.to_thread(train, model_path, name, seed=seed)
            champion = await asyncio.to_thread(current_version, model_path, name)
            # Refused before anything is saved: a retrain must not change what clients send.
            await asyncio.to_thread(
                check_replacement, model_path, name, result.schema_view(), allow=False
            )
            trained = await asyncio.to_thread(
                save_result, model_path, name, result, source, activate=False, created_by=actor
            )
            report = await asyncio.to_thread(
                self._evaluate, name, result, champion, trained.version, policy
            )
        except Exception as exc:  # the run failed: record it, never crash the service
            log.warning(
                "training failed",
                extra={"model": name, "run_id": run_id, "error_type": type(exc).__name__},
            )
            await _record(store, run_id, status="failed", error=_bounded_error(exc))
            return
        version = trained.version
        decision = report["decision"]
        try:
            await self._db.run(
                store.save_promotion_report,
                model=name,
                candidate_version=version,
                champion_version=champion,
                actor=actor,
                policy=policy.mode,
                decision=decision,
                report=report,
            )
            await self._db.run(
                store.audit,
                actor,
                "promotion_report",
                name,
                {"before": champion, "candidate": version, "decision": decision},
            )
            if decision == "promoted":
                await self._db.run(self._governance.promote, name, version, SERVICE_ACTOR)
                loaded = await asyncio.to_thread(self._models.reload, name)
                self._publisher.publish(loaded)
        except Exception as exc:  # BundleError, Unavailable, a refused promote
            # The candidate is saved (retired); the champion keeps serving.
            await _record(store, run_id, status="failed", error=_bounded_error(exc))
            return
        await _record(
            store, run_id, status="succeeded", version=version, metrics=dict(trained.metrics)
        )
        log.info(
            "training succeeded",
            extra={"model": name, "version": version, "run_id": run_id},
        )

    def _evaluate(
        self,
        name: str,
        result: TrainResult,
        champion: str | None,
        candidate: str,
        policy: Policy,
    ) -> dict[str, Any]:
        """The promotion report: both scored on the candidate's holdout, and the decision."""
        model_path = self._models.model_path
        report: dict[str, Any] = {
            "policy": policy.model_dump(),
            "candidate": candidate,
            "champion": champion,
        }
        holdout = result.holdout
        if champion is None or holdout is None:
            report["decision"] = "promoted" if policy.mode == "auto" else "held"
            report["criteria"] = []
            return report
        bundle = load_bundle(model_path, name, champion)
        # The candidate's declared segments, read back from its saved (checked) metadata.
        info = parse_metadata(load_metadata(model_path, name, candidate))
        segments = SegmentIndex.from_metadata(info) if info.segments else None
        names = list(result.schema.names)
        cand = score_holdout(
            result.pipeline,
            holdout,
            result.operating_point,
            feature_names=names,
            segments=segments,
        )
        champ = score_holdout(
            bundle.pipeline,
            holdout,
            OperatingPoint(bundle.info.positive_class, bundle.info.threshold),
            feature_names=names,
            segments=segments,
        )
        criteria = compare(
            cand, champ, policy, positive_class=result.operating_point.positive_class
        )
        passed = accepted(criteria)
        report.update(
            data={"holdout_rows": len(holdout.y), "split": "the candidate's holdout"},
            metrics={"candidate": cand.to_dict(), "champion": champ.to_dict()},
            criteria=[c.to_dict() for c in criteria],
            accepted=passed,
        )
        if policy.mode == "manual":
            report["decision"] = "held"
        else:
            report["decision"] = "promoted" if passed else "rejected"
        return report


async def _record(store: Store, run_id: str, **fields: Any) -> None:
    try:
        await asyncio.to_thread(store.update_training_run, run_id, **fields)
    except DatabaseUnavailable:
        log.warning("could not record training run state", extra={"run_id": run_id})


def _bounded_error(exc: Exception) -> str:
    # The type and a short message: training errors come from our own code and
    # data-shape checks, but cap the length so nothing large lands in the table.
    return f"{type(exc).__name__}: {str(exc)[:200]}"
