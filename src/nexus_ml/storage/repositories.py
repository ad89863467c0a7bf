"""Repositories: predictions and feedback, and the Store that holds every repository."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from . import aggregates, request_rollups
from .aggregates import WindowAggregate
from .copy_insert import copy_insert
from .db import session_factory
from .errors import Conflict, NotFound, translating_errors
from .governance import GovernanceRepository
from .locks import try_advisory_lock
from .models import Feedback, Prediction
from .operations import OperationsRepository
from .records import (
    CHALLENGER,
    CHAMPION,
    FeedbackRecord,
    LabelledPrediction,
    ModelStats,
    PredictionRecord,
    ScoredRow,
    WindowRow,
    minted_at,
    utcnow,
)
from .sqlite_insert import sqlite_insert

__all__ = ["MAX_WINDOW", "Store", "insert_many", "try_advisory_lock"]

# Drift and quality windows are read into memory; cap them whatever the caller asks for.
MAX_WINDOW = 100_000
# Where a look-up by id looks (PostgreSQL's day partitions; see _find_prediction): around the
# time the id carries (a record's created_at is taken within milliseconds of its id; an hour
# covers any clock step between the two), then among the recent days.
ID_TIME_SLACK = timedelta(hours=1)
RECENT_LOOKUP = timedelta(days=8)


@translating_errors
class Store(OperationsRepository, GovernanceRepository):
    """All repositories over one engine; each method is one short transaction."""

    # Predictions go in through the driver: COPY on PostgreSQL (storage/copy_insert.py), one
    # multi-row INSERT per chunk on SQLite (storage/sqlite_insert.py). False = SQLAlchemy's
    # ORM INSERT (kept for the side-by-side benchmark and the equality tests).
    fast_insert = True

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = session_factory(engine)

    def session(self) -> Session:
        """A new session (for callers composing several operations in one transaction)."""
        return self._sessions()

    def ping(self) -> float:
        """Round-trip ``SELECT 1``; returns seconds taken, raises DatabaseUnavailable."""
        start = time.perf_counter()
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return time.perf_counter() - start

    # -- predictions --------------------------------------------------------------------------

    def insert_predictions(self, records: Iterable[PredictionRecord]) -> int:
        """Insert records, ignoring ids already stored; returns how many were new."""
        records = list({r.id: r for r in records}.values())
        if not records:
            return 0
        postgres = self.engine.dialect.name == "postgresql"
        with self._sessions.begin() as session:
            # RETURNING lists only the rows actually inserted (rowcount is unreliable for
            # executemany across drivers): exactly those are counted in the aggregates, in
            # the same transaction, so a replayed record is neither stored nor counted twice.
            inserted: Sequence[str]
            if self.fast_insert:
                inserted = (copy_insert if postgres else sqlite_insert)(session, records)
            else:
                dialect = postgresql if postgres else sqlite
                stmt = (
                    dialect.insert(Prediction)
                    # PostgreSQL: the partitioned table's key (migration 0005); a replayed
                    # record repeats its time, so (id, created_at) recognises it.
                    .on_conflict_do_nothing(
                        index_elements=["id", "created_at"] if postgres else ["id"]
                    )
                    .returning(Prediction.id)
                )
                inserted = session.execute(stmt, [r.to_row() for r in records]).scalars().all()
            if inserted:
                new = set(inserted)
                # Champions only: the monitoring answers for what was served (a challenger's
                # rows are read raw, by the comparison).
                champions = [r for r in records if r.id in new and r.role == CHAMPION]
                aggregates.add_records(session, champions)
            return len(inserted)

    def _find_prediction(
        self, session: Session, prediction_id: str, *, near: datetime | None = None
    ) -> Prediction | None:
        """The prediction ``prediction_id``; on PostgreSQL, first in the partition of its time.

        A look-up by id alone probes every day partition's key index (about 190 at the
        default retention; benchmarks/bench_partition_lookup.py). Ids are time-ordered
        (``new_id``): the time they carry, or ``near`` when the caller knows it (a
        challenger's id is derived, its record has the champion's time), prunes to the one
        or two partitions around it. Ids not made by ``new_id`` (older uuid4 ones decode to a
        random time) then look among the recent partitions, then everywhere.
        """
        if self.engine.dialect.name == "postgresql":
            at = near or minted_at(prediction_id)
            spans: list[tuple[datetime, datetime | None]] = []
            if at is not None:
                spans.append((at - ID_TIME_SLACK, at + ID_TIME_SLACK))
            spans.append((utcnow() - RECENT_LOOKUP, None))
            for since, until in spans:
                query = select(Prediction).where(
                    Prediction.id == prediction_id, Prediction.created_at >= since
                )
                if until is not None:
                    query = query.where(Prediction.created_at <= until)
                row = session.scalars(query).first()
                if row is not None:
                    return row
        return session.get(Prediction, prediction_id)

    def get_prediction(self, prediction_id: str) -> PredictionRecord:
        """The stored prediction ``prediction_id``; raises NotFound."""
        with self._sessions() as session:
            row = self._find_prediction(session, prediction_id)
            if row is None:
                raise NotFound(f"prediction {prediction_id}")
            return PredictionRecord(
                id=row.id,
                model=row.model,
                version=row.version,
                created_at=row.created_at,
                features=row.features,
                predicted_class=row.predicted_class,
                confidence=row.confidence,
                probabilities=row.probabilities,
                latency_seconds=row.latency_seconds,
                request_id=row.request_id,
                profile_hash=row.profile_hash,
                role=row.role,
            )

    def recent_predictions(
        self,
        model: str,
        *,
        limit: int | None = None,
        since: datetime | None = None,
        version: str | None = None,
        until: datetime | None = None,
    ) -> list[WindowRow]:
        """The newest predictions of ``model`` made in [since, until) (newest first, at most
        MAX_WINDOW)."""
        cap = MAX_WINDOW if limit is None else max(0, min(limit, MAX_WINDOW))
        stmt = select(
            Prediction.features,
            Prediction.confidence,
            Prediction.predicted_class,
            Prediction.created_at,
            Prediction.probabilities,
        ).where(Prediction.model == model, Prediction.role == CHAMPION)
        if since is not None:
            stmt = stmt.where(Prediction.created_at >= since)
        if until is not None:
            stmt = stmt.where(Prediction.created_at < until)
        if version is not None:
            stmt = stmt.where(Prediction.version == version)
        stmt = stmt.order_by(Prediction.created_at.desc(), Prediction.id.desc()).limit(cap)
        with self._sessions() as session:
            return [WindowRow(*row) for row in session.execute(stmt)]

    def scored_rows(
        self, model: str, since: datetime, until: datetime, limit: int = MAX_WINDOW
    ) -> list[ScoredRow]:
        """Predictions of ``model`` made in [since, until), each with its label or None
        (newest first, at most ``limit`` ≤ MAX_WINDOW): one read serves both the label-free and
        the realised clinical metrics of a window."""
        stmt = (
            select(
                Prediction.features,
                Prediction.probabilities,
                Prediction.predicted_class,
                Prediction.created_at,
                Feedback.actual,
            )
            .outerjoin(Feedback, _labels_of_predictions())
            .where(
                Prediction.model == model,
                Prediction.role == CHAMPION,
                Prediction.created_at >= since,
                Prediction.created_at < until,
            )
            .order_by(Prediction.created_at.desc(), Prediction.id.desc())
            .limit(max(0, min(limit, MAX_WINDOW)))
        )
        with self._sessions() as session:
            return [ScoredRow(*row) for row in session.execute(stmt)]

    def prediction_stats(
        self,
        model: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> dict[str, ModelStats]:
        """Raw latency/confidence arrays, counts and class counts per model in [since, until).

        Reads every row of the window: the reference computation the aggregates are checked
        against (tests, benchmarks). No endpoint calls it; they read ``window_aggregates``.
        """
        stmt = select(
            Prediction.model,
            Prediction.latency_seconds,
            Prediction.confidence,
            Prediction.predicted_class,
        ).where(Prediction.role == CHAMPION)
        if model is not None:
            stmt = stmt.where(Prediction.model == model)
        if since is not None:
            stmt = stmt.where(Prediction.created_at >= since)
        if until is not None:
            stmt = stmt.where(Prediction.created_at < until)
        stats: dict[str, ModelStats] = {}
        with self._sessions() as session:
            for name, latency, confidence, predicted in session.execute(stmt):
                s = stats.get(name)
                if s is None:
                    s = stats[name] = ModelStats()
                s.count += 1
                s.latencies.append(latency)
                s.confidences.append(confidence)
                s.class_counts[predicted] = s.class_counts.get(predicted, 0) + 1
        return stats

    def window_aggregates(
        self, model: str | None, since: datetime, until: datetime
    ) -> dict[str, WindowAggregate]:
        """Per model: the aggregates of the predictions made in ``[since, until)`` widened to
        whole minutes (see storage/aggregates.py); no prediction row is read."""
        with self._sessions() as session:
            return aggregates.window_aggregates(session, model, since, until)

    def window_counts(
        self, model: str | None, since: datetime, until: datetime, step_seconds: int
    ) -> list[tuple[str, datetime, int]]:
        """(model, bucket start, predictions) per minute (or hour) of the aligned window."""
        with self._sessions() as session:
            return aggregates.window_counts(session, model, since, until, step_seconds)

    def minute_totals(
        self, pieces: Sequence[tuple[datetime, datetime]]
    ) -> dict[str, dict[datetime, aggregates.MinuteTotals]]:
        """Per model and minute: the per-minute aggregates of ``pieces`` (the anomaly bands)."""
        with self._sessions() as session:
            return aggregates.minute_totals(session, pieces)

    def add_request_counts(self, minutes: Mapping[datetime, request_rollups.Counts]) -> int:
        """Add per-minute request counts (an instance's flush) to the stored ones."""
        with self._sessions.begin() as session:
            return request_rollups.add_request_counts(session, minutes)

    def request_minutes(
        self, pieces: Sequence[tuple[datetime, datetime]]
    ) -> dict[datetime, dict[tuple[str, str], int]]:
        """Per minute of ``pieces``: the stored request counts (the anomaly bands)."""
        with self._sessions() as session:
            return request_rollups.request_minutes(session, pieces)

    def count_predictions(self, model: str | None = None, role: str = CHAMPION) -> int:
        """How many predictions of ``role`` are stored (for one model, or all)."""
        stmt = select(func.count()).select_from(Prediction).where(Prediction.role == role)
        if model is not None:
            stmt = stmt.where(Prediction.model == model)
        with self._sessions() as session:
            return int(session.execute(stmt).scalar_one())

    # -- feedback -----------------------------------------------------------------------------

    def add_feedback(
        self,
        prediction_id: str,
        actual: str,
        correct: bool | None = None,
        *,
        challenger: str | None = None,
    ) -> FeedbackRecord:
        """Label a prediction; ``correct`` defaults to actual == predicted class.

        ``challenger``: the id of a shadow challenger's score of the same instance
        (``challenger_id``); if it is stored and ``actual`` is one of its classes, it gets
        the same label in the same transaction. Raises NotFound for an unknown prediction
        and Conflict if it is already labelled.
        """
        with self._sessions() as session:
            prediction = self._find_prediction(session, prediction_id)
            if prediction is None:
                raise NotFound(f"prediction {prediction_id}")
            if correct is None:
                correct = actual == prediction.predicted_class
            now = utcnow()
            row = Feedback(
                prediction_id=prediction_id,
                prediction_created_at=prediction.created_at,
                actual=actual,
                correct=correct,
                received_at=now,
            )
            # Looked up before the label is added: the query would autoflush it, and a second
            # label's unique violation would escape the Conflict handling below (a 500).
            shadow = (
                None
                if challenger is None
                else self._find_prediction(session, challenger, near=prediction.created_at)
            )
            session.add(row)
            # A challenger with other classes cannot be scored against this label.
            if shadow is not None and actual in shadow.probabilities:
                session.add(
                    Feedback(
                        prediction_id=challenger,
                        prediction_created_at=shadow.created_at,
                        actual=actual,
                        correct=actual == shadow.predicted_class,
                        received_at=now,
                    )
                )
            try:
                # The label and its count in the aggregates commit together: the flush makes
                # the unique constraint decide a race before the count is added.
                session.flush()
                # The aggregates count champions only (a challenger's label is read raw, by
                # the comparison), as they count only champion predictions.
                if prediction.role == CHAMPION:
                    made = (prediction.model, prediction.version, prediction.created_at, correct)
                    aggregates.add_feedback(session, [made])
                session.commit()
            except IntegrityError as exc:
                # The unique constraint decides races between two concurrent labels.
                session.rollback()
                raise Conflict(f"prediction {prediction_id} already has feedback") from exc
            return FeedbackRecord(
                row.id, row.prediction_id, row.actual, row.correct, row.received_at
            )

    def labelled_predictions(
        self,
        model: str,
        since: datetime,
        until: datetime | None = None,
        *,
        with_features: bool = False,
        role: str = CHAMPION,
        version: str | None = None,
        scored_by: str | None = None,
    ) -> list[LabelledPrediction]:
        """Labelled predictions of ``model`` MADE in [since, until), oldest first: the newest
        MAX_WINDOW of them when there are more (the accuracy a job reports is the latest one).

        ``with_features`` also reads each prediction's features and probabilities (for the
        per-segment clinical metrics). ``role``: the answers (champion, the default) or a
        shadow challenger's scores; ``version``: only that version's; ``scored_by``: only
        the requests that challenger version also scored in the window (the same patients).
        """
        columns: list[Any] = [
            Prediction.id,
            Prediction.created_at,
            Prediction.version,
            Prediction.predicted_class,
            Prediction.confidence,
            Feedback.actual,
            Feedback.correct,
            Feedback.received_at,
        ]
        if with_features:
            columns += [Prediction.features, Prediction.probabilities]
        stmt = (
            select(*columns)
            .join(Feedback, _labels_of_predictions())
            .where(
                Prediction.model == model,
                Prediction.role == role,
                Prediction.created_at >= since,
                # The same bound on the label's copy of the time: the planner can start from
                # the window's labels (its index) instead of probing feedback per prediction.
                Feedback.prediction_created_at >= since,
            )
        )
        if until is not None:
            stmt = stmt.where(Prediction.created_at < until, Feedback.prediction_created_at < until)
        if version is not None:
            stmt = stmt.where(Prediction.version == version)
        if scored_by is not None:
            shadow = aliased(Prediction)
            # Within the same window: both scores of a request share its created_at.
            scored = select(shadow.request_id).where(
                shadow.model == model,
                shadow.role == CHALLENGER,
                shadow.version == scored_by,
                shadow.created_at >= since,
            )
            if until is not None:
                scored = scored.where(shadow.created_at < until)
            stmt = stmt.where(Prediction.request_id.in_(scored))
        stmt = stmt.order_by(Prediction.created_at.desc(), Prediction.id.desc()).limit(MAX_WINDOW)
        with self._sessions() as session:
            rows = [LabelledPrediction(*row) for row in session.execute(stmt)]
        rows.reverse()
        return rows


def _labels_of_predictions() -> Any:
    """The join of a prediction and its label on the whole key, (id, time).

    ``feedback.prediction_created_at`` is the prediction's own ``created_at`` (set by
    ``add_feedback``): with both, PostgreSQL joins each label to its day partition's key and
    hashes the window's labels rather than probing feedback once per prediction of the window
    (at 10 million stored, the week's labelled read of a model: 2.0 s instead of 3.9-4.6 s).
    """
    return and_(
        Feedback.prediction_id == Prediction.id,
        Feedback.prediction_created_at == Prediction.created_at,
    )


def insert_many(engine: Engine, records: Sequence[PredictionRecord]) -> int:
    """Functional shortcut for ``Store(engine).insert_predictions(records)``."""
    return Store(engine).insert_predictions(records)
