"""The period report (``GET /reports/summary``) and the predictions timeline.

Availability is the share of HTTP responses that were not 5xx, counted by
``ml_api_requests_total`` (every route, probes and scrapes included, exactly what the
AvailabilitySLO rules count) since the service started; the request counters live in
memory, so there is no older history to report on. The other sections cover the window.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from nexus_ml.ml.registry import ModelRegistry
from nexus_ml.service.alerts import AlertLoop
from nexus_ml.service.database import Database
from nexus_ml.service.errors import Invalid
from nexus_ml.service.families import Families
from nexus_ml.service.health import Lifecycle
from nexus_ml.service.threshold_state import ThresholdState
from nexus_ml.service.views.models import aggregate_accuracy, aligned
from nexus_ml.service.views.ops_results import Availability, ReportModel, ReportSummary
from nexus_ml.service.views.query import availability as availability_of
from nexus_ml.service.views.query import (
    binned_percentiles,
    check_model,
    sample_sums,
    status_classes,
)
from nexus_ml.service.views.results import PredictionTimeline, TimeWindow
from nexus_ml.storage.aggregates import WindowAggregate
from nexus_ml.storage.records import utcnow

AVAILABILITY_DEFINITION = (
    "1 - (HTTP responses with a 5xx status / all HTTP responses), both counted by "
    "ml_api_requests_total over every route since the service started (all workers)"
)
MAX_BUCKETS = 2000


class Reports:
    """The period report and the predictions timeline."""

    def __init__(
        self,
        *,
        db: Database,
        models: ModelRegistry,
        families: Families,
        thresholds: ThresholdState,
        alerts: AlertLoop,
        lifecycle: Lifecycle,
    ) -> None:
        self._db = db
        self._models = models
        self._families = families
        self._thresholds = thresholds
        self._alerts = alerts
        self._lifecycle = lifecycle

    def _availability(self, classes: dict[str, int]) -> Availability:
        """Availability since start against the ``availability_slo`` target."""
        target = self._thresholds.current.availability_slo
        value = availability_of(classes)
        budget = None
        if value is not None:
            budget = 1.0 - (1.0 - value) / (1.0 - target)
        return Availability(
            definition=AVAILABILITY_DEFINITION,
            since=datetime.fromtimestamp(self._lifecycle.started_at, UTC),
            requests=sum(classes.values()),
            errors_5xx=classes.get("5xx", 0),
            value=value,
            target=target,
            met=None if value is None else value >= target,
            error_budget_remaining=budget,
        )

    async def summary(self, window: TimeWindow, model: str | None) -> ReportSummary:
        """Volume, latency, errors, accuracy, drift, alerts and availability for the period."""
        names = check_model(self._models, model)
        db = self._db
        window = aligned(window)
        stats = await db.run(db.store.window_aggregates, model, window.since, window.until)
        families = await asyncio.to_thread(self._families.collect)
        classes = status_classes(families)
        models = []
        for name in names:
            s = stats.get(name)
            latest = await db.run(db.store.latest_drift_result, name)
            drift = (latest.results.get("drift") or {}) if latest is not None else {}
            models.append(
                ReportModel(
                    model=name,
                    predictions=s.count if s else 0,
                    latency_seconds=binned_percentiles(s),
                    accuracy=aggregate_accuracy(s),
                    drift_share=latest.drift_share if latest is not None else None,
                    drifted_features=[str(f) for f in drift.get("drifted_features") or []],
                    drift_computed_at=latest.computed_at if latest is not None else None,
                )
            )
        every = WindowAggregate()
        for s in stats.values():
            every.merge(s)
        errors = {
            "responses_5xx": classes.get("5xx", 0),
            "responses_4xx": classes.get("4xx", 0),
            **{
                f"component:{k[0]}": round(v)
                for k, v in sorted(sample_sums(families, "ml_errors_total", ("component",)).items())
            },
        }
        active = self._alerts.active
        return ReportSummary(
            window=window,
            generated_at=utcnow(),
            predictions_total=sum(s.count for s in stats.values()),
            latency_seconds=binned_percentiles(every),
            errors=errors,
            models=models,
            alerts={
                "firing": sum(a.state == "firing" for a in active),
                "pending": sum(a.state == "pending" for a in active),
            },
            alert_names=sorted({a.name for a in active}),
            availability=self._availability(classes),
        )

    async def timeline(
        self, window: TimeWindow, model: str | None, step_seconds: int
    ) -> PredictionTimeline:
        """Stored predictions per ``step_seconds`` bucket (aligned to the epoch) and model,
        from the per-minute (or, for whole-hour steps, per-hour) aggregates."""
        names = check_model(self._models, model)
        if step_seconds % 60:
            raise Invalid(
                "step_seconds: must be a whole number of minutes (60, 120, ...)", "step_seconds"
            )
        window = aligned(window)
        step = timedelta(seconds=step_seconds)
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        first = epoch + ((window.since - epoch) // step) * step
        n = -(-(window.until - first) // step)  # ceiling division of timedeltas
        if n > MAX_BUCKETS:
            raise Invalid(
                f"step_seconds: the window would need {n} buckets (at most {MAX_BUCKETS})",
                "step_seconds",
            )
        db = self._db
        rows = await db.run(db.store.window_counts, model, window.since, window.until, step_seconds)
        series = {name: [0] * n for name in names}
        for name, at, count in rows:
            counts = series.setdefault(name, [0] * n)
            counts[(at - first) // step] += count
        return PredictionTimeline(
            window=window,
            step_seconds=step_seconds,
            buckets=[first + i * step for i in range(n)],
            series=dict(sorted(series.items())),
        )
