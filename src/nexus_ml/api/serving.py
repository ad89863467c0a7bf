"""Serving one prediction: validate, predict, observe, hand off the record.

Kept free of FastAPI types so the benchmark can call it directly and so the
cost of every step is visible in one place (see docs/benchmarks.md).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nexus_ml.api.errors import ApiError
from nexus_ml.api.schemas import FeedbackResponse
from nexus_ml.ml.predictor import NotEvaluable
from nexus_ml.ml.registry import LoadedModel, UnknownModel
from nexus_ml.ml.schema import ValidationProblem, validate_batch, validate_instance
from nexus_ml.storage.errors import Conflict, NotFound, Unrecordable, WriterFull
from nexus_ml.storage.records import PredictionRecord, is_id, new_id, utcnow

if TYPE_CHECKING:
    from nexus_ml.api.state import Nexus

_perf = time.perf_counter
# Names no value: which one overflowed is not knowable, and the values are patient data.
NOT_EVALUABLE = (
    "values are outside what the model can evaluate (its arithmetic overflows); "
    "send values near the training ranges that GET /api/v1/models/{name} lists"
)


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
    try:
        index, probabilities = loaded.predictor.predict_one(row)
    except NotEvaluable:
        # Refused like invalid input: nothing is recorded, observed or answered with NaN.
        raise ValidationProblem("features", NOT_EVALUABLE) from None
    latency = _perf() - start
    record = _record(loaded, features, index, probabilities, latency, utcnow())
    _submit(nexus, (record,))
    # Observed only once the record is safely accepted: a refused prediction
    # (503 in _submit) was never served and must not be counted as one.
    nexus.observer(loaded).observe(row, record.predicted_class, record.confidence, latency)
    return {"model": loaded.name, "version": loaded.version, **_answer(record)}


def predict_many(nexus: Nexus, loaded: LoadedModel, instances: Any) -> dict[str, Any]:
    """A batch, all or nothing: a bad instance means nothing is predicted, stored or observed."""
    X = validate_batch(loaded.schema, instances, max_instances=nexus.settings.max_batch)
    start = _perf()
    # predict_batch_indices applies scikit-learn's own tie rule (decision > 0),
    # which argmax over probabilities can break when the decision is ~0.
    try:
        indices, proba = loaded.predictor.predict_batch_indices(X)
    except NotEvaluable as exc:
        field = "instances" if exc.row is None else f"instances[{exc.row}]"
        raise ValidationProblem(field, NOT_EVALUABLE) from None
    latency = (_perf() - start) / len(X)
    now = utcnow()
    records = [
        _record(loaded, instances[i], int(indices[i]), proba[i], latency, now)
        for i in range(len(X))
    ]
    _submit(nexus, records)
    observe = nexus.observer(loaded).observe
    for i, record in enumerate(records):
        observe(X[i], record.predicted_class, record.confidence, latency)
    return {
        "model": loaded.name,
        "version": loaded.version,
        "predictions": [_answer(record) for record in records],
    }


def _record(
    loaded: LoadedModel,
    features: Any,
    index: int,
    probabilities: Any,
    latency: float,
    now: Any,
) -> PredictionRecord:
    """The record of one answered instance."""
    classes = loaded.classes
    return PredictionRecord(
        id=new_id(),
        model=loaded.name,
        version=loaded.version,
        created_at=now,
        features=features,
        predicted_class=classes[index],
        confidence=float(probabilities[index]),
        probabilities=dict(zip(classes, map(float, probabilities), strict=True)),
        latency_seconds=latency,
    )


def _answer(record: PredictionRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "predicted_class": record.predicted_class,
        "confidence": record.confidence,
        "probabilities": record.probabilities,
    }


def _submit(nexus: Nexus, records: Sequence[PredictionRecord]) -> None:
    try:
        nexus.writer.submit_many(records)
    except WriterFull:
        # Neither memory nor the disk journal can take the record: refuse the
        # prediction rather than answer one that the audit trail would lack.
        nexus.count_error("database", "WriterFull")
        raise ApiError(503, "cannot record predictions right now: retry later") from None
    except Unrecordable:
        # A number or text no store can hold (the predictor's checks make this a bug):
        # a 200 is only given for a prediction whose record was accepted.
        nexus.count_error("database", "Unrecordable")
        raise ApiError(500, "the prediction could not be recorded") from None


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
