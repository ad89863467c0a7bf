"""Governance: promotion_reports, the evidence of each candidate-versus-champion evaluation.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out here rather than imported from models.py: a revision is a frozen snapshot.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    """Create promotion_reports (never purged: it is the change-control record)."""
    op.create_table(
        "promotion_reports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("candidate_version", sa.String(64), nullable=False),
        sa.Column("champion_version", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("policy", sa.String(16), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("report", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_promotion_reports"),
        sa.CheckConstraint(
            "decision IN ('promoted', 'rejected', 'held')", name="ck_promotion_reports_decision"
        ),
    )
    op.create_index(
        "ix_promotion_reports_model_created_at", "promotion_reports", ["model", "created_at"]
    )


def downgrade() -> None:
    """Drop promotion_reports."""
    op.drop_index("ix_promotion_reports_model_created_at", table_name="promotion_reports")
    op.drop_table("promotion_reports")
