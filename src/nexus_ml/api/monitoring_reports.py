"""The period report (``GET /reports/summary``) and the predictions timeline.

Availability is the share of HTTP responses that were not 5xx, counted by
``ml_api_requests_total`` (every route, probes and scrapes included, exactly what the
AvailabilitySLO rules count) since the service started; the request counters live in
memory, so there is no older history to report on. The other sections cover the window.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select

from nexus_ml.api.errors import ApiError
from nexus_ml.api.monitoring_query import availability as availability_of
from nexus_ml.api.monitoring_query import (
    check_model,
    collect_families,
    db_call,
    percentiles,
    sample_sums,
    status_classes,
)
from nexus_ml.api.monitoring_schemas import PredictionTimeline, TimeWindow
from nexus_ml.api.monitoring_schemas_ops import Availability, ReportModel, ReportSummary
from nexus_ml.api.monitoring_views import model_accuracy
from nexus_ml.storage.errors import translate_errors
from nexus_ml.storage.models import Prediction
from nexus_ml.storage.records import utcnow

if TYPE_CHECKING:
    from nexus_ml.api.state import Nexus
    from nexus_ml.storage.repositories import Store

AVAILABILITY_DEFINITION = (
    "1 - (HTTP responses with a 5xx status / all HTTP responses), both counted by "
    "ml_api_requests_total over every route since the service started (all workers)"
)
MAX_BUCKETS = 2000


def availability(nexus: Nexus, classes: dict[str, int]) -> Availability:
    """Availability since start against the ``availability_slo`` target."""
    target = nexus.thresholds.availability_slo
    value = availability_of(classes)
    budget = None
    if value is not None:
        budget = 1.0 - (1.0 - value) / (1.0 - target)
    return Availability(
        definition=AVAILABILITY_DEFINITION,
        since=datetime.fromtimestamp(nexus.started_at, UTC),
        requests=sum(classes.values()),
        errors_5xx=classes.get("5xx", 0),
        value=value,
        target=target,
        met=None if value is None else value >= target,
        error_budget_remaining=budget,
    )


async def report_summary(nexus: Nexus, window: TimeWindow, model: str | None) -> ReportSummary:
    """Volume, latency, errors, accuracy, drift, alerts and availability for the period."""
    names = check_model(nexus, model)
    stats = await db_call(nexus, nexus.store.prediction_stats, model, window.since, window.until)
    families = await asyncio.to_thread(collect_families, nexus)
    classes = status_classes(families)
    models = []
    for name in names:
        s = stats.get(name)
        latest = await db_call(nexus, nexus.store.latest_drift_result, name)
        drift = (latest.results.get("drift") or {}) if latest is not None else {}
        models.append(
            ReportModel(
                model=name,
                predictions=s.count if s else 0,
                latency_seconds=percentiles(s.latencies if s else []),
                accuracy=await model_accuracy(nexus, name, window),
                drift_share=latest.drift_share if latest is not None else None,
                drifted_features=[str(f) for f in drift.get("drifted_features") or []],
                drift_computed_at=latest.computed_at if latest is not None else None,
            )
        )
    every = [x for s in stats.values() for x in s.latencies]
    errors = {
        "responses_5xx": classes.get("5xx", 0),
        "responses_4xx": classes.get("4xx", 0),
        **{
            f"component:{k[0]}": round(v)
            for k, v in sorted(sample_sums(families, "ml_errors_total", ("component",)).items())
        },
    }
    active = nexus.alerts
    return ReportSummary(
        window=window,
        generated_at=utcnow(),
        predictions_total=sum(s.count for s in stats.values()),
        latency_seconds=percentiles(every),
        errors=errors,
        models=models,
        alerts={
            "firing": sum(a.state == "firing" for a in active),
            "pending": sum(a.state == "pending" for a in active),
        },
        alert_names=sorted({a.name for a in active}),
        availability=availability(nexus, classes),
    )


@translate_errors
def _prediction_times(
    store: Store, model: str | None, since: datetime, until: datetime
) -> list[tuple[str, datetime]]:
    # Only (model, time): the timeline must not read feature values it does not need.
    # Belongs in storage/repositories.py as Store.prediction_times (see the report).
    stmt = select(Prediction.model, Prediction.created_at).where(
        Prediction.created_at >= since, Prediction.created_at < until
    )
    if model is not None:
        stmt = stmt.where(Prediction.model == model)
    with store.session() as session:
        return [(m, t) for m, t in session.execute(stmt)]


async def prediction_timeline(
    nexus: Nexus, window: TimeWindow, model: str | None, step_seconds: int
) -> PredictionTimeline:
    """Stored predictions per ``step_seconds`` bucket (aligned to the epoch) and model."""
    names = check_model(nexus, model)
    step = timedelta(seconds=step_seconds)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    first = epoch + ((window.since - epoch) // step) * step
    n = -(-(window.until - first) // step)  # ceiling division of timedeltas
    if n > MAX_BUCKETS:
        raise ApiError(
            422,
            f"step_seconds: the window would need {n} buckets (at most {MAX_BUCKETS})",
            "step_seconds",
        )
    rows = await db_call(nexus, _prediction_times, nexus.store, model, window.since, window.until)
    series = {name: [0] * n for name in names}
    for name, at in rows:
        counts = series.setdefault(name, [0] * n)
        counts[(at - first) // step] += 1
    return PredictionTimeline(
        window=window,
        step_seconds=step_seconds,
        buckets=[first + i * step for i in range(n)],
        series=dict(sorted(series.items())),
    )
