"""Operational repositories: training runs, audit log, drift results, threshold overrides."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from .errors import Conflict, NotFound, translating_errors
from .models import ERROR_MAX_CHARS, AuditEntry, DriftResult, ThresholdOverride, TrainingRun
from .records import (
    AuditRecord,
    DriftResultRecord,
    ThresholdOverrideRecord,
    TrainingRunRecord,
    new_id,
    utcnow,
)

# The most audit entries one read returns (the API's page is at most 500; one more tells it
# whether a next page exists).
MAX_AUDIT_PAGE = 500

# Allowed training-run transitions; anything else is a Conflict (e.g. succeeded -> running).
_TRANSITIONS = {
    "queued": {"running", "failed"},
    "running": {"succeeded", "failed"},
    "succeeded": set(),
    "failed": set(),
}


def _run(row: TrainingRun) -> TrainingRunRecord:
    return TrainingRunRecord(
        id=row.id,
        model=row.model,
        status=row.status,
        requested_by=row.requested_by,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        version=row.version,
        metrics=row.metrics,
        error=row.error,
    )


def _drift(row: DriftResult) -> DriftResultRecord:
    return DriftResultRecord(
        id=row.id,
        model=row.model,
        version=row.version,
        computed_at=row.computed_at,
        window_size=row.window_size,
        window_start=row.window_start,
        window_end=row.window_end,
        drift_share=row.drift_share,
        results=row.results,
    )


@translating_errors
class OperationsRepository:
    """Training runs, audit log, drift results and threshold overrides (mixed into Store)."""

    engine: Engine
    _sessions: sessionmaker[Session]

    # -- training runs ------------------------------------------------------------------------

    def create_training_run(self, model: str, requested_by: str) -> TrainingRunRecord:
        """Record a queued training run."""
        row = TrainingRun(
            id=new_id(),
            model=model,
            status="queued",
            requested_by=requested_by,
            created_at=utcnow(),
        )
        with self._sessions.begin() as session:
            session.add(row)
        return _run(row)

    def update_training_run(
        self,
        run_id: str,
        *,
        status: str | None = None,
        version: str | None = None,
        metrics: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> TrainingRunRecord:
        """Move a run along queued -> running -> succeeded|failed; raises NotFound/Conflict."""
        with self._sessions.begin() as session:
            # FOR UPDATE: two workers must not both move the same run (no-op on SQLite).
            row = session.get(TrainingRun, run_id, with_for_update=True)
            if row is None:
                raise NotFound(f"training run {run_id}")
            if status is not None and status != row.status:
                if status not in _TRANSITIONS.get(row.status, set()):
                    raise Conflict(f"training run cannot go from {row.status} to {status}")
                row.status = status
                now = utcnow()
                if status == "running":
                    row.started_at = now
                else:
                    row.finished_at = now
            if version is not None:
                row.version = version
            if metrics is not None:
                row.metrics = metrics
            if error is not None:
                # Bounded: a traceback must not bloat the table (or leak more than a summary).
                row.error = error[:ERROR_MAX_CHARS]
            return _run(row)

    def get_training_run(self, run_id: str) -> TrainingRunRecord:
        """One training run; raises NotFound."""
        with self._sessions() as session:
            row = session.get(TrainingRun, run_id)
            if row is None:
                raise NotFound(f"training run {run_id}")
            return _run(row)

    def list_training_runs(
        self, model: str | None = None, *, status: str | None = None, limit: int = 50
    ) -> list[TrainingRunRecord]:
        """Training runs, newest first."""
        stmt = select(TrainingRun)
        if model is not None:
            stmt = stmt.where(TrainingRun.model == model)
        if status is not None:
            stmt = stmt.where(TrainingRun.status == status)
        stmt = stmt.order_by(TrainingRun.created_at.desc(), TrainingRun.id).limit(limit)
        with self._sessions() as session:
            return [_run(row) for row in session.scalars(stmt)]

    # -- audit log ----------------------------------------------------------------------------

    def audit(
        self, actor: str, action: str, target: str, details: dict[str, Any] | None = None
    ) -> int:
        """Append an audit entry; ``actor`` must be a key fingerprint, never the key."""
        row = AuditEntry(at=utcnow(), actor=actor, action=action, target=target, details=details)
        with self._sessions.begin() as session:
            session.add(row)
            session.flush()
            return row.id

    def list_audit(
        self,
        *,
        limit: int = 100,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: datetime | None = None,
        before: int | None = None,
    ) -> list[AuditRecord]:
        """Audit entries, newest (highest id) first; ``before``: only ids below it (a page).

        Keyset by id, not by ``at``: ids only grow, while two replicas' clocks may disagree,
        and a page boundary must neither skip nor repeat an entry. Reads at most ``limit``
        rows (capped at MAX_AUDIT_PAGE + 1) walking the primary key down.
        """
        stmt = select(AuditEntry)
        if actor is not None:
            stmt = stmt.where(AuditEntry.actor == actor)
        if action is not None:
            stmt = stmt.where(AuditEntry.action == action)
        if target is not None:
            stmt = stmt.where(AuditEntry.target == target)
        if since is not None:
            stmt = stmt.where(AuditEntry.at >= since)
        if before is not None:
            stmt = stmt.where(AuditEntry.id < before)
        cap = max(0, min(limit, MAX_AUDIT_PAGE + 1))
        stmt = stmt.order_by(AuditEntry.id.desc()).limit(cap)
        with self._sessions() as session:
            return [
                AuditRecord(r.id, r.at, r.actor, r.action, r.target, r.details)
                for r in session.scalars(stmt)
            ]

    # -- drift results ------------------------------------------------------------------------

    def save_drift_result(
        self,
        model: str,
        version: str,
        *,
        window_size: int,
        drift_share: float,
        results: dict[str, Any],
        window_start: datetime | None = None,
        window_end: datetime | None = None,
        computed_at: datetime | None = None,
    ) -> DriftResultRecord:
        """Store one drift computation."""
        row = DriftResult(
            model=model,
            version=version,
            computed_at=computed_at or utcnow(),
            window_size=window_size,
            window_start=window_start,
            window_end=window_end,
            drift_share=drift_share,
            results=results,
        )
        with self._sessions.begin() as session:
            session.add(row)
            session.flush()
            return _drift(row)

    def latest_drift_result(
        self, model: str, version: str | None = None
    ) -> DriftResultRecord | None:
        """The most recent drift result of ``model`` (optionally one version), or None."""
        stmt = select(DriftResult).where(DriftResult.model == model)
        if version is not None:
            stmt = stmt.where(DriftResult.version == version)
        stmt = stmt.order_by(DriftResult.computed_at.desc(), DriftResult.id.desc()).limit(1)
        with self._sessions() as session:
            row = session.scalars(stmt).first()
            return None if row is None else _drift(row)

    # -- threshold overrides ------------------------------------------------------------------

    def threshold_overrides(self) -> dict[str, ThresholdOverrideRecord]:
        """Every override, by key."""
        with self._sessions() as session:
            return {
                r.key: ThresholdOverrideRecord(r.key, r.value, r.updated_at, r.updated_by)
                for r in session.scalars(select(ThresholdOverride))
            }

    def get_threshold_override(self, key: str) -> float | None:
        """The override of ``key``, or None."""
        with self._sessions() as session:
            row = session.get(ThresholdOverride, key)
            return None if row is None else row.value

    def set_threshold_override(self, key: str, value: float, updated_by: str) -> None:
        """Create or replace the override of ``key``."""
        row = {"key": key, "value": value, "updated_at": utcnow(), "updated_by": updated_by}
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(ThresholdOverride).values(row)
        stmt = stmt.on_conflict_do_update(
            index_elements=["key"],
            set_={"value": value, "updated_at": row["updated_at"], "updated_by": updated_by},
        )
        with self._sessions.begin() as session:
            session.execute(stmt)

    def delete_threshold_override(self, key: str) -> bool:
        """Remove the override of ``key``; True if there was one."""
        with self._sessions.begin() as session:
            row = session.get(ThresholdOverride, key)
            if row is None:
                return False
            session.delete(row)
            return True
