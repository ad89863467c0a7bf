"""PostgreSQL: predictions partitioned by day; feedback keyed by its prediction's time.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

Both dialects: ``feedback.prediction_created_at`` (filled from its prediction) replaces the
foreign key to ``predictions.id``, which a partitioned table cannot offer (its unique keys
must hold the partition key); retention deletes feedback by that time (storage/retention.py).

PostgreSQL only: the existing ``predictions`` is converted into a RANGE-partitioned table
(one partition per UTC day holding data, plus today and the days ahead, plus a DEFAULT
partition) and its rows copied: the copy takes as long as the table is large, under the
migration lock. Columns and secondary indexes earlier revisions added are carried over as
they are (``LIKE`` and the indexes' own definitions), so this revision freezes no column list.
SQLite: predictions unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

# The partition names and the DDL creating them are the running service's (one definition).
from nexus_ml.storage.partitions import DAYS_AHEAD, DEFAULT_PARTITION, create_days

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FK = "fk_feedback_prediction_id_predictions"
IX_FEEDBACK_TIME = "ix_feedback_prediction_created_at"


def _secondary_indexes(conn: sa.Connection, table: str) -> list[tuple[str, str]]:
    """(name, CREATE INDEX statement) of ``table``'s indexes other than its primary key."""
    rows = conn.execute(
        sa.text(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = to_regclass(:t) AND NOT i.indisprimary ORDER BY c.relname"
        ),
        {"t": table},
    )
    return [(name, ddl) for name, ddl in rows]


def _rebuild_predictions(*, partitioned: bool) -> None:
    """Replace ``predictions`` by a partitioned (or plain) copy with the same rows."""
    conn = op.get_bind()
    indexes = _secondary_indexes(conn, "predictions")
    op.execute("ALTER TABLE predictions RENAME TO predictions_old")
    op.execute("ALTER TABLE predictions_old RENAME CONSTRAINT pk_predictions TO pk_predictions_old")
    for name, _ in indexes:
        op.execute(f"DROP INDEX {name}")
    like = "LIKE predictions_old INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE"
    if partitioned:
        op.execute(f"CREATE TABLE predictions ({like}) PARTITION BY RANGE (created_at)")
        op.execute(
            "ALTER TABLE predictions ADD CONSTRAINT pk_predictions PRIMARY KEY (id, created_at)"
        )
        op.execute(f"CREATE TABLE {DEFAULT_PARTITION} PARTITION OF predictions DEFAULT")
        stored = conn.execute(
            sa.text("SELECT DISTINCT (created_at AT TIME ZONE 'UTC')::date FROM predictions_old")
        ).scalars()
        today = datetime.now(UTC).date()
        create_days(conn, [*stored, *(today + timedelta(days=d) for d in range(DAYS_AHEAD + 1))])
    else:
        op.execute(f"CREATE TABLE predictions ({like})")
        op.execute("ALTER TABLE predictions ADD CONSTRAINT pk_predictions PRIMARY KEY (id)")
    op.execute("INSERT INTO predictions SELECT * FROM predictions_old")
    op.execute("DROP TABLE predictions_old")
    # The saved definitions name the table "predictions" (schema-qualified): the new one now.
    for _, ddl in indexes:
        op.execute(ddl)
    op.execute("ANALYZE predictions")


def upgrade() -> None:
    """Feedback carries its prediction's time (no foreign key); PostgreSQL partitions."""
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("prediction_created_at", sa.DateTime(timezone=True)))
    op.execute(
        "UPDATE feedback SET prediction_created_at = (SELECT p.created_at FROM predictions p "
        "WHERE p.id = feedback.prediction_id)"
    )
    with op.batch_alter_table("feedback") as batch:
        batch.drop_constraint(FK, type_="foreignkey")
        batch.alter_column(
            "prediction_created_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )
        batch.create_index(IX_FEEDBACK_TIME, ["prediction_created_at"])
    if op.get_bind().dialect.name == "postgresql":
        _rebuild_predictions(partitioned=True)


def downgrade() -> None:
    """Back to one plain table and the foreign key (feedback without a prediction is lost)."""
    if op.get_bind().dialect.name == "postgresql":
        _rebuild_predictions(partitioned=False)
    op.execute("DELETE FROM feedback WHERE prediction_id NOT IN (SELECT id FROM predictions)")
    with op.batch_alter_table("feedback") as batch:
        batch.drop_index(IX_FEEDBACK_TIME)
        batch.drop_column("prediction_created_at")
        batch.create_foreign_key(FK, "predictions", ["prediction_id"], ["id"], ondelete="CASCADE")
