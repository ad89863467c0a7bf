"""Aggregates of the stored predictions (prediction_rollups, prediction_rollup_bins), backfilled.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

The backfill counts the predictions and labels already stored, so the monitoring answers the
same after the upgrade as before. It reuses storage/aggregates.py (not a frozen copy): the bins
are fixed for good (changing them would need a new table anyway, since stored counts cannot be
re-binned), and one definition guarantees that backfilled rows equal what the writer adds.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEY = ["span_seconds", "model", "bucket_start", "version"]
_BACKFILL_CHUNK = 5000


def _key_columns() -> list[sa.Column]:
    return [
        sa.Column("span_seconds", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
    ]


def upgrade() -> None:
    """Create the two aggregate tables and count what is already stored."""
    op.create_table(
        "prediction_rollups",
        *_key_columns(),
        sa.Column("predictions", sa.BigInteger(), nullable=False),
        sa.Column("latency_sum", sa.Float(), nullable=False),
        sa.Column("latency_max", sa.Float(), nullable=False),
        sa.Column("confidence_sum", sa.Float(), nullable=False),
        sa.Column("feedback", sa.BigInteger(), nullable=False),
        sa.Column("correct", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(*_KEY, name="pk_prediction_rollups"),
    )
    op.create_index(
        "ix_prediction_rollups_span_seconds_bucket_start",
        "prediction_rollups",
        ["span_seconds", "bucket_start"],
    )
    op.create_table(
        "prediction_rollup_bins",
        *_key_columns(),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(*_KEY, "kind", "key", name="pk_prediction_rollup_bins"),
    )
    op.create_index(
        "ix_prediction_rollup_bins_span_seconds_bucket_start",
        "prediction_rollup_bins",
        ["span_seconds", "bucket_start"],
    )
    _backfill()


def _backfill() -> None:
    from nexus_ml.storage import aggregates
    from nexus_ml.storage.models import Feedback, Prediction
    from nexus_ml.storage.records import PredictionRecord

    session = Session(bind=op.get_bind())
    stmt = (
        sa.select(
            Prediction.id,
            Prediction.model,
            Prediction.version,
            Prediction.created_at,
            Prediction.predicted_class,
            Prediction.confidence,
            Prediction.latency_seconds,
            Feedback.correct,
        )
        .outerjoin(Feedback, Feedback.prediction_id == Prediction.id)
        # Champions only, as the writer counts them (a challenger's rows are read raw).
        .where(Prediction.role == "champion")
        .execution_options(yield_per=_BACKFILL_CHUNK)
    )
    for chunk in session.execute(stmt).partitions():
        records = [
            PredictionRecord(
                id=pid,
                model=model,
                version=version,
                created_at=at,
                features={},
                predicted_class=cls,
                confidence=conf,
                probabilities={},
                latency_seconds=lat,
            )
            for pid, model, version, at, cls, conf, lat, _ in chunk
        ]
        aggregates.add_records(session, records)
        aggregates.add_feedback(
            session,
            [
                (r.model, r.version, r.created_at, ok)
                for r, row in zip(records, chunk, strict=True)
                if (ok := row[-1]) is not None
            ],
        )
    session.flush()


def downgrade() -> None:
    """Drop the aggregate tables (the predictions they count are untouched)."""
    op.drop_index(
        "ix_prediction_rollup_bins_span_seconds_bucket_start", table_name="prediction_rollup_bins"
    )
    op.drop_table("prediction_rollup_bins")
    op.drop_index(
        "ix_prediction_rollups_span_seconds_bucket_start", table_name="prediction_rollups"
    )
    op.drop_table("prediction_rollups")
