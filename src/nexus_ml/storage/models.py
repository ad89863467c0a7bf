"""SQLAlchemy 2 typed declarative models: the schema the Alembic migrations create."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ERROR_MAX_CHARS = 2000

# JSONB on PostgreSQL (indexable, compact); plain JSON text on SQLite.
JSONType = JSON().with_variant(JSONB(), "postgresql")

# Deterministic constraint names, so migrations can refer to (and later drop) them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both dialects (SQLite stores naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            # A naive time is ambiguous (local? UTC?); refusing it keeps every window honest.
            raise ValueError("naive datetime: pass a timezone-aware (UTC) datetime")
        value = value.astimezone(UTC)
        # SQLite compares datetimes as text: store all of them in one zone, without an offset.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base carrying the shared metadata."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: JSONType,
    }


class Prediction(Base):
    """One served prediction (the PredictionRecord contract).

    On PostgreSQL the table is partitioned by ``created_at`` (migration 0005, partitions.py),
    so its key there is (id, created_at): a partitioned table's unique keys must hold the
    partition key. The ORM still identifies a row by ``id`` alone (ids are unique uuid4s).
    """

    __tablename__ = "predictions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(100))
    version: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    features: Mapped[dict[str, Any]]
    predicted_class: Mapped[str] = mapped_column(String(200))
    confidence: Mapped[float] = mapped_column(Float)
    probabilities: Mapped[dict[str, Any]]
    latency_seconds: Mapped[float] = mapped_column(Float)
    # Traceability: the client's (or a generated) X-Request-ID, the sha256 of the version's
    # reference profile, and whether the version answered (champion) or ran in shadow.
    request_id: Mapped[str | None] = mapped_column(String(64), index=True)
    profile_hash: Mapped[str | None] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16), server_default="champion")

    __table_args__ = (
        Index("ix_predictions_model_created_at", "model", "created_at"),
        CheckConstraint("role IN ('champion', 'challenger')", name="role"),
    )


class Feedback(Base):
    """The ground-truth label for one prediction (at most one per prediction).

    No foreign key (migration 0005): PostgreSQL's partitioned ``predictions`` has no unique
    key on ``id`` alone, and a key on (id, created_at) would make dropping a day partition
    scan feedback. ``Store.add_feedback`` checks the prediction exists; retention deletes
    feedback by ``prediction_created_at`` (its prediction's time), with its predictions.
    """

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    prediction_id: Mapped[str] = mapped_column(String(32), unique=True)
    prediction_created_at: Mapped[datetime] = mapped_column(index=True)
    actual: Mapped[str] = mapped_column(String(200))
    correct: Mapped[bool] = mapped_column(Boolean)
    received_at: Mapped[datetime]


class TrainingRun(Base):
    """A (re)training request and its outcome."""

    __tablename__ = "training_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16))
    requested_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    version: Mapped[str | None] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(String(ERROR_MAX_CHARS))

    __table_args__ = (
        CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed')", name="status"),
        Index("ix_training_runs_model_created_at", "model", "created_at"),
    )


class AuditEntry(Base):
    """Who did what to which target; ``actor`` is a key fingerprint, never a key."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200))
    details: Mapped[dict[str, Any] | None]


class PromotionReport(Base):
    """One evaluation of a candidate version against the champion (migration 0003)."""

    __tablename__ = "promotion_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(100))
    candidate_version: Mapped[str] = mapped_column(String(64))
    champion_version: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(64))
    policy: Mapped[str] = mapped_column(String(16))
    # promoted: the policy accepted it and it became champion; rejected: it failed a criterion;
    # held: the policy is manual, so it waits for a person's promote.
    decision: Mapped[str] = mapped_column(String(16))
    report: Mapped[dict[str, Any]]

    __table_args__ = (
        CheckConstraint("decision IN ('promoted', 'rejected', 'held')", name="decision"),
        Index("ix_promotion_reports_model_created_at", "model", "created_at"),
    )


class DriftResult(Base):
    """One drift computation over a window of recent predictions."""

    __tablename__ = "drift_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(100))
    version: Mapped[str] = mapped_column(String(64))
    computed_at: Mapped[datetime]
    window_size: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[datetime | None]
    window_end: Mapped[datetime | None]
    drift_share: Mapped[float] = mapped_column(Float)
    results: Mapped[dict[str, Any]]

    __table_args__ = (Index("ix_drift_results_model_computed_at", "model", "computed_at"),)


class ThresholdOverride(Base):
    """An operator's runtime override of one alert threshold."""

    __tablename__ = "threshold_overrides"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(64))


class PredictionRollup(Base):
    """Per model, version and bucket (a minute or an hour): the stored predictions' totals.

    Maintained by the record writer in the transaction that inserts the predictions (and by
    ``add_feedback`` in the one that stores a label), so it always equals a count of the rows.
    Never purged by retention: it is what the monitoring reads once the rows are gone.
    """

    __tablename__ = "prediction_rollups"

    span_seconds: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(100), primary_key=True)
    bucket_start: Mapped[datetime] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    predictions: Mapped[int] = mapped_column(BigInteger)
    latency_sum: Mapped[float] = mapped_column(Float)
    latency_max: Mapped[float] = mapped_column(Float)
    confidence_sum: Mapped[float] = mapped_column(Float)
    feedback: Mapped[int] = mapped_column(BigInteger)
    correct: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        Index("ix_prediction_rollups_span_seconds_bucket_start", "span_seconds", "bucket_start"),
    )


class PredictionRollupBin(Base):
    """Per model, version and bucket: one bin's count of one distribution.

    ``kind`` is ``class`` (``key`` = the predicted class), ``latency`` or ``confidence``
    (``key`` = the bin index of storage/bins.py). One row per bin, so that concurrent writers
    add to it with a plain additive upsert (a JSON histogram cannot be added to atomically).
    """

    __tablename__ = "prediction_rollup_bins"

    span_seconds: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(100), primary_key=True)
    bucket_start: Mapped[datetime] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        Index(
            "ix_prediction_rollup_bins_span_seconds_bucket_start", "span_seconds", "bucket_start"
        ),
    )


class RequestRollup(Base):
    """Per minute: the HTTP requests every instance served, by status class or latency bucket.

    ``kind`` is ``status`` (``key`` = ``2xx``, ``5xx``, …) or ``latency`` (``key`` = the
    duration histogram's bucket bound, ``le``, non-cumulative). Added to by each instance's
    periodic flush (storage/request_rollups.py); like the prediction rollups, kept by
    retention (no patient data) — the anomaly bands read three weeks back.
    """

    __tablename__ = "request_rollups"

    bucket_start: Mapped[datetime] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
