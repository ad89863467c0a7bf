"""Traceability: each prediction's request id, reference-profile hash and role.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add request_id, profile_hash and role to predictions (rows made before: champion)."""
    # batch_alter_table: SQLite cannot add a CHECK constraint in place; on PostgreSQL it is
    # plain ALTER TABLE.
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("request_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("profile_hash", sa.String(64), nullable=True))
        batch.add_column(
            sa.Column("role", sa.String(16), nullable=False, server_default="champion")
        )
        batch.create_check_constraint("role", "role IN ('champion', 'challenger')")
    # A trace starts from a request id: one lookup, not a scan.
    op.create_index("ix_predictions_request_id", "predictions", ["request_id"])


def downgrade() -> None:
    """Drop the three columns."""
    op.drop_index("ix_predictions_request_id", table_name="predictions")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_constraint(op.f("ck_predictions_role"), type_="check")
        batch.drop_column("role")
        batch.drop_column("profile_hash")
        batch.drop_column("request_id")
