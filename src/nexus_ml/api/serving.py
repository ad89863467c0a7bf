"""Serving one prediction: validate, predict, observe, hand off the record.

Kept free of FastAPI types so the benchmark can call it directly and so the
cost of every step is visible in one place (see docs/benchmarks.md).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from nexus_ml.api.errors import ApiError
from nexus_ml.api.schemas import FeedbackResponse
from nexus_ml.ml.registry import LoadedModel, UnknownModel
from nexus_ml.ml.schema import ValidationProblem, validate_batch, validate_instance
from nexus_ml.storage.errors import Conflict, NotFound, WriterFull
from nexus_ml.storage.records import PredictionRecord, is_id, new_id, utcnow

if TYPE_CHECKING:
    from nexus_ml.api.state import Nexus

_perf = time.perf_counter


def model_or_404(nexus: Nexus, name: str) -> LoadedModel:
    """The loaded model, or a 404 that names it (bounded: at most 64 chars echoed)."""
    try:
        return nexus.models.get(name)
    except UnknownModel:
        raise ApiError(404, f"unknown model '{name[:64]}'", "name") from None


def stored_id_or_404(value: str, field: str, what: str) -> str:
    """``value`` if it can be a stored id, else the 404 of an unknown one.

    Every id from a path goes through here before any query: PostgreSQL refuses a NUL
    byte in a string (a 500 before this check), SQLite does not, and an id that
    :func:`~nexus_ml.storage.records.new_id` cannot have made is unknown on both.
    """
    if not is_id(value):
        raise ApiError(404, f"unknown {what}", field)
    return value


def predict_one(nexus: Nexus, loaded: LoadedModel, features: Any) -> dict[str, Any]:
    """One instance: the answer as a JSON-ready dict."""
    row = validate_instance(loaded.schema, features)
    start = _perf()
    index, probabilities = loaded.predictor.predict_one(row)
    latency = _perf() - start
    answer = _serve(
        nexus,
        loaded,
        nexus.observer(loaded),
        row,
        features,
        index,
        probabilities,
        latency,
        utcnow(),
    )
    return {"model": loaded.name, "version": loaded.version, **answer}


def predict_many(nexus: Nexus, loaded: LoadedModel, instances: Any) -> dict[str, Any]:
    """A batch: validated whole first, so a bad instance means nothing is predicted or stored."""
    X = validate_batch(loaded.schema, instances, max_instances=nexus.settings.max_batch)
    start = _perf()
    # predict_batch_indices applies scikit-learn's own tie rule (decision > 0),
    # which argmax over probabilities can break when the decision is ~0.
    indices, proba = loaded.predictor.predict_batch_indices(X)
    latency = (_perf() - start) / len(X)
    observer = nexus.observer(loaded)
    now = utcnow()
    out = [
        _serve(nexus, loaded, observer, X[i], instances[i], int(indices[i]), proba[i], latency, now)
        for i in range(len(X))
    ]
    return {"model": loaded.name, "version": loaded.version, "predictions": out}


def _serve(
    nexus: Nexus,
    loaded: LoadedModel,
    observer: Any,
    row: Any,
    features: Any,
    index: int,
    probabilities: Any,
    latency: float,
    now: Any,
) -> dict[str, Any]:
    """Record one answered instance, observe it, and return its JSON-ready answer."""
    classes = loaded.classes
    predicted = classes[index]
    confidence = float(probabilities[index])
    probs = dict(zip(classes, map(float, probabilities), strict=True))
    pid = new_id()
    _submit(
        nexus,
        PredictionRecord(
            id=pid,
            model=loaded.name,
            version=loaded.version,
            created_at=now,
            features=features,
            predicted_class=predicted,
            confidence=confidence,
            probabilities=probs,
            latency_seconds=latency,
        ),
    )
    # Observed only once the record is safely accepted: a refused prediction
    # (503 in _submit) was never served and must not be counted as one.
    observer.observe(row, predicted, confidence, latency)
    return {
        "id": pid,
        "predicted_class": predicted,
        "confidence": confidence,
        "probabilities": probs,
    }


def _submit(nexus: Nexus, record: PredictionRecord) -> None:
    try:
        nexus.writer.submit(record)
    except WriterFull:
        # Neither memory nor the disk journal can take the record: refuse the
        # prediction rather than answer one that the audit trail would lack.
        nexus.count_error("database", "WriterFull")
        raise ApiError(503, "cannot record predictions right now: retry later") from None


async def add_feedback(nexus: Nexus, prediction_id: str, actual: str) -> FeedbackResponse:
    """Store a label for a stored (or still queued) prediction."""
    stored_id_or_404(prediction_id, "prediction_id", "prediction id")
    store = nexus.store
    try:
        try:
            stored = await nexus.db(store.get_prediction, prediction_id)
        except NotFound:
            # The label may arrive while its prediction still waits in the
            # writer's queue: flush once and look again.
            await nexus.writer.flush(timeout=5.0)
            stored = await nexus.db(store.get_prediction, prediction_id)
    except NotFound:
        raise ApiError(404, "unknown prediction id", "prediction_id") from None
    loaded = nexus.models.get_or_none(stored.model)
    classes = loaded.classes if loaded is not None else list(stored.probabilities)
    if actual not in classes:
        raise ApiError(422, f"actual must be one of {sorted(classes)}", "actual")
    correct = actual == stored.predicted_class
    try:
        await nexus.db(store.add_feedback, prediction_id, actual, correct)
    except NotFound:
        raise ApiError(404, "unknown prediction id", "prediction_id") from None
    except Conflict:
        raise ApiError(409, "this prediction already has feedback", "prediction_id") from None
    nexus.metrics.model_feedback_total.labels(stored.model, "true" if correct else "false").inc()
    return FeedbackResponse(
        prediction_id=prediction_id, model=stored.model, actual=actual, correct=correct
    )


__all__ = ["ValidationProblem", "add_feedback", "model_or_404", "predict_many", "predict_one"]
