"""Serving one prediction: validate, predict, hand off the record, observe; and feedback.

Kept free of HTTP so the benchmark can call it directly and so the cost of every step is
visible in one place (see docs/benchmarks.md).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nexus_ml.ml.predictor import NotEvaluable
from nexus_ml.ml.registry import LoadedModel, ModelRegistry, UnknownModel
from nexus_ml.ml.schema import Issue, ValidationProblem, check_batch, check_instance
from nexus_ml.monitoring.metrics import Metrics
from nexus_ml.service.database import Database
from nexus_ml.service.errors import Conflict, Failed, Invalid, NotFound, Unavailable, require_id
from nexus_ml.service.publishing import ModelPublisher
from nexus_ml.service.recording import prediction_record
from nexus_ml.service.shadow import ShadowScorer
from nexus_ml.storage import errors as storage
from nexus_ml.storage.records import CHAMPION, PredictionRecord, challenger_id, utcnow
from nexus_ml.storage.writer import RecordWriter

_perf = time.perf_counter
# Names no value: which one overflowed is not knowable, and the values are patient data.
NOT_EVALUABLE = (
    "values are outside what the model can evaluate (its arithmetic overflows); "
    "send values near the training ranges that GET /api/v1/models/{name} lists"
)


def find_model(models: ModelRegistry, name: str) -> LoadedModel:
    """The loaded model, or NotFound naming it (bounded: at most 64 chars echoed)."""
    try:
        return models.get(name)
    except UnknownModel:
        raise NotFound(f"unknown model '{name[:64]}'", "name") from None


@dataclass(frozen=True, slots=True)
class Feedback:
    """A stored label and whether the prediction was right."""

    prediction_id: str
    model: str
    actual: str
    correct: bool


class Serving:
    """Predictions and feedback, over the collaborators they use."""

    def __init__(
        self,
        *,
        models: ModelRegistry,
        publisher: ModelPublisher,
        writer: RecordWriter,
        db: Database,
        metrics: Metrics,
        max_batch: int,
        shadow: ShadowScorer | None = None,
    ) -> None:
        self.models = models
        self.shadow = shadow
        self.publisher = publisher
        self.writer = writer
        self._db = db
        self._metrics = metrics
        self._max_batch = max_batch

    def model(self, name: str) -> LoadedModel:
        """The loaded model called ``name``, or NotFound."""
        return find_model(self.models, name)

    def predict_one(
        self, loaded: LoadedModel, features: Any, request_id: str | None = None
    ) -> dict[str, Any]:
        """One instance: the answer as a JSON-ready dict (``request_id`` is stored with it)."""
        try:
            row, warnings = check_instance(loaded.schema, features)
            start = _perf()
            try:
                index, probabilities = loaded.predictor.predict_one(row)
            except NotEvaluable:
                # Refused like invalid input: nothing is recorded, observed or answered with NaN.
                raise ValidationProblem("features", NOT_EVALUABLE) from None
        except ValidationProblem as problem:
            raise self._refused(loaded, problem) from None
        latency = _perf() - start
        record = prediction_record(
            loaded,
            sent=features,
            index=index,
            probabilities=probabilities,
            latency=latency,
            at=utcnow(),
            request_id=request_id,
        )
        self._submit((record,))
        # Observed only once the record is safely accepted: a refused prediction
        # (503 in _submit) was never served and must not be counted as one.
        self.publisher.observer(loaded).observe(
            warnings, record.predicted_class, record.confidence, latency
        )
        if self.shadow is not None:
            self.shadow.offer(loaded, (record,))
        return {"model": loaded.name, "version": loaded.version, **_answer(record, warnings)}

    def predict_many(
        self, loaded: LoadedModel, instances: Any, request_id: str | None = None
    ) -> dict[str, Any]:
        """A batch, all or nothing: one bad instance and nothing is predicted, stored, observed."""
        try:
            X, warnings = check_batch(loaded.schema, instances, max_instances=self._max_batch)
            start = _perf()
            # predict_batch_indices applies scikit-learn's own tie rule (decision > 0),
            # which argmax over probabilities can break when the decision is ~0.
            try:
                indices, proba = loaded.predictor.predict_batch_indices(X)
            except NotEvaluable as exc:
                field = "instances" if exc.row is None else f"instances[{exc.row}]"
                raise ValidationProblem(field, NOT_EVALUABLE) from None
        except ValidationProblem as problem:
            raise self._refused(loaded, problem) from None
        latency = (_perf() - start) / len(X)
        now = utcnow()
        records = [
            prediction_record(
                loaded,
                sent=instances[i],
                index=int(indices[i]),
                probabilities=proba[i],
                latency=latency,
                at=now,
                request_id=request_id,
            )
            for i in range(len(X))
        ]
        self._submit(records)
        observe = self.publisher.observer(loaded).observe
        for record, row_warnings in zip(records, warnings, strict=True):
            observe(row_warnings, record.predicted_class, record.confidence, latency)
        if self.shadow is not None:
            self.shadow.offer(loaded, records)
        return {
            "model": loaded.name,
            "version": loaded.version,
            "predictions": [
                _answer(record, row_warnings)
                for record, row_warnings in zip(records, warnings, strict=True)
            ],
        }

    def _refused(self, loaded: LoadedModel, problem: ValidationProblem) -> Invalid:
        # A refused value is a data-quality event for the model (counted by feature and
        # kind, once per problem; a client's unknown feature names never become labels).
        self.publisher.observer(loaded).refused(
            [(p.feature, p.kind) for p in problem.problems if p.feature and p.kind]
        )
        return Invalid(
            str(problem),
            problem.field,
            problems=[p.to_dict() for p in problem.problems],
        )

    def _submit(self, records: Sequence[PredictionRecord]) -> None:
        try:
            self.writer.submit_many(records)
        except storage.WriterFull:
            # Neither memory nor the disk journal can take the record: refuse the
            # prediction rather than answer one that the audit trail would lack.
            self._metrics.errors_total.labels("database", "WriterFull").inc()
            raise Unavailable("cannot record predictions right now: retry later") from None
        except storage.Unrecordable:
            # A number or text no store can hold (the predictor's checks make this a bug):
            # a 200 is only given for a prediction whose record was accepted.
            self._metrics.errors_total.labels("database", "Unrecordable").inc()
            raise Failed("the prediction could not be recorded") from None

    async def add_feedback(self, prediction_id: str, actual: str) -> Feedback:
        """Store a label for a stored (or still queued) prediction."""
        require_id(prediction_id, "prediction_id", "prediction id")
        db, store = self._db, self._db.store
        try:
            try:
                stored = await db.run(store.get_prediction, prediction_id)
            except storage.NotFound:
                # The label may arrive while its prediction still waits in the
                # writer's queue: flush once and look again.
                await self.writer.flush(timeout=5.0)
                stored = await db.run(store.get_prediction, prediction_id)
        except storage.NotFound:
            raise NotFound("unknown prediction id", "prediction_id") from None
        if stored.role != CHAMPION:
            # A challenger's score was never an answer: its label comes with the champion's.
            raise NotFound("unknown prediction id", "prediction_id")
        # The classes of the version that MADE the prediction, not of the one serving now (a
        # new champion may name its classes differently). Its stored probabilities name every
        # class of that version (``_record``), so no bundle is read, and a version since
        # deleted from disk still takes its labels.
        classes = list(stored.probabilities)
        if actual not in classes:
            raise Invalid(f"actual must be one of {sorted(classes)}", "actual")
        correct = actual == stored.predicted_class
        try:
            # The challenger's score of the same instance, if any, is labelled with it.
            await db.run(
                store.add_feedback,
                prediction_id,
                actual,
                correct,
                challenger=challenger_id(prediction_id),
            )
        except storage.NotFound:
            raise NotFound("unknown prediction id", "prediction_id") from None
        except storage.Conflict:
            raise Conflict("this prediction already has feedback", "prediction_id") from None
        self._metrics.model_feedback_total.labels(
            stored.model, "true" if correct else "false"
        ).inc()
        return Feedback(
            prediction_id=prediction_id, model=stored.model, actual=actual, correct=correct
        )


def _answer(record: PredictionRecord, warnings: list[Issue]) -> dict[str, Any]:
    return {
        "id": record.id,
        "predicted_class": record.predicted_class,
        "confidence": record.confidence,
        "probabilities": record.probabilities,
        # The feature and the kind, never the value: an extrapolated answer says so.
        "warnings": [{"feature": feature, "kind": kind} for feature, kind in warnings],
    }
