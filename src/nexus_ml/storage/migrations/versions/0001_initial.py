"""Initial schema: predictions, feedback, training runs, audit log, drift results, overrides.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported from models.py: a revision is a frozen snapshot.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    """Create every table."""
    op.create_table(
        "predictions",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        _ts("created_at"),
        sa.Column("features", JSON, nullable=False),
        sa.Column("predicted_class", sa.String(200), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("probabilities", JSON, nullable=False),
        sa.Column("latency_seconds", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_predictions"),
    )
    op.create_index("ix_predictions_model_created_at", "predictions", ["model", "created_at"])

    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("prediction_id", sa.String(32), nullable=False),
        sa.Column("actual", sa.String(200), nullable=False),
        sa.Column("correct", sa.Boolean(), nullable=False),
        _ts("received_at"),
        sa.ForeignKeyConstraint(
            ["prediction_id"],
            ["predictions.id"],
            name="fk_feedback_prediction_id_predictions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_feedback"),
        sa.UniqueConstraint("prediction_id", name="uq_feedback_prediction_id"),
    )

    op.create_table(
        "training_runs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        _ts("created_at"),
        _ts("started_at", nullable=True),
        _ts("finished_at", nullable=True),
        sa.Column("version", sa.String(64), nullable=True),
        sa.Column("metrics", JSON, nullable=True),
        sa.Column("error", sa.String(2000), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed')",
            name="ck_training_runs_status",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_training_runs"),
    )
    op.create_index("ix_training_runs_model_created_at", "training_runs", ["model", "created_at"])

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _ts("at"),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("details", JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])

    op.create_table(
        "drift_results",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        _ts("computed_at"),
        sa.Column("window_size", sa.Integer(), nullable=False),
        _ts("window_start", nullable=True),
        _ts("window_end", nullable=True),
        sa.Column("drift_share", sa.Float(), nullable=False),
        sa.Column("results", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_drift_results"),
    )
    op.create_index("ix_drift_results_model_computed_at", "drift_results", ["model", "computed_at"])

    op.create_table(
        "threshold_overrides",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        _ts("updated_at"),
        sa.Column("updated_by", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_threshold_overrides"),
    )


def downgrade() -> None:
    """Drop every table."""
    op.drop_table("threshold_overrides")
    op.drop_index("ix_drift_results_model_computed_at", table_name="drift_results")
    op.drop_table("drift_results")
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_training_runs_model_created_at", table_name="training_runs")
    op.drop_table("training_runs")
    op.drop_table("feedback")
    op.drop_index("ix_predictions_model_created_at", table_name="predictions")
    op.drop_table("predictions")
