"""Per-minute request counts (request_rollups) for the in-process anomaly bands.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

Nothing to backfill: requests were never stored (their history starts with this version;
the bands fall back to the trailing hour until three weeks of it exist).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create request_rollups."""
    op.create_table(
        "request_rollups",
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key", sa.String(32), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("bucket_start", "kind", "key", name="pk_request_rollups"),
    )


def downgrade() -> None:
    """Drop request_rollups (nothing else refers to it)."""
    op.drop_table("request_rollups")
