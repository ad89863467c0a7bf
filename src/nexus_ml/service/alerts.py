"""The in-process alert loop: the service's own metrics in, pending and firing alerts out."""

from __future__ import annotations

import asyncio
import contextlib
import time

from nexus_ml.ml.registry import ModelRegistry
from nexus_ml.monitoring.alerting import ActiveAlert, AlertEvaluator, publish_firing
from nexus_ml.monitoring.measurements import MetricHistory
from nexus_ml.monitoring.metrics import Metrics
from nexus_ml.service.database import Database
from nexus_ml.service.families import Families
from nexus_ml.service.threshold_state import ThresholdState
from nexus_ml.storage.errors import DatabaseUnavailable


class AlertLoop:
    """Evaluates the alerts each tick and keeps the last answer for /health and the API."""

    def __init__(
        self,
        *,
        db: Database,
        evaluator: AlertEvaluator,
        families: Families,
        models: ModelRegistry,
        thresholds: ThresholdState,
        metrics: Metrics,
    ) -> None:
        self.evaluator = evaluator
        self._db = db
        self.history = MetricHistory()
        self._families = families
        self._models = models
        self._thresholds = thresholds
        self._metrics = metrics
        self.active: list[ActiveAlert] = []
        self._published: set[tuple[str, str]] = set()

    def firing(self) -> list[ActiveAlert]:
        """The alerts that are firing (not merely pending)."""
        return [a for a in self.active if a.state == "firing"]

    async def evaluate(self) -> None:
        """One tick: refresh the limits, record the metrics, evaluate, publish the firing."""
        # Every worker evaluates the same aggregated metrics, so every worker's
        # /health shows the same alerts without electing one.
        now = time.time()
        with contextlib.suppress(DatabaseUnavailable):
            await self._db.thread(self._thresholds.refresh)
        families = await asyncio.to_thread(self._families.collect)
        self.history.record(families, now)
        measurements = self.history.measurements(
            self._models.names(), now, thresholds=self._thresholds.current
        )
        self.active = self.evaluator.evaluate(measurements)
        self._published = publish_firing(self._metrics.alerts_active, self.active, self._published)
