"""Promotion reports: the stored evidence of each candidate-versus-champion evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from .errors import translating_errors
from .models import PromotionReport
from .records import utcnow


@dataclass(frozen=True, slots=True, kw_only=True)
class PromotionReportRecord:
    """One stored evaluation."""

    id: int
    model: str
    candidate_version: str
    champion_version: str | None
    created_at: datetime
    actor: str
    policy: str
    decision: str
    report: dict[str, Any]


@translating_errors
class GovernanceRepository:
    """Promotion reports (mixed into Store)."""

    engine: Engine
    _sessions: sessionmaker[Session]

    def save_promotion_report(
        self,
        *,
        model: str,
        candidate_version: str,
        champion_version: str | None,
        actor: str,
        policy: str,
        decision: str,
        report: dict[str, Any],
    ) -> int:
        """Store one evaluation; returns its id."""
        row = PromotionReport(
            model=model,
            candidate_version=candidate_version,
            champion_version=champion_version,
            created_at=utcnow(),
            actor=actor,
            policy=policy,
            decision=decision,
            report=report,
        )
        with self._sessions.begin() as session:
            session.add(row)
            session.flush()
            return row.id

    def list_promotion_reports(self, model: str, *, limit: int = 50) -> list[PromotionReportRecord]:
        """A model's reports, newest first."""
        stmt = (
            select(PromotionReport)
            .where(PromotionReport.model == model)
            .order_by(PromotionReport.id.desc())
            .limit(max(1, min(limit, 500)))
        )
        with self._sessions() as session:
            return [
                PromotionReportRecord(
                    id=r.id,
                    model=r.model,
                    candidate_version=r.candidate_version,
                    champion_version=r.champion_version,
                    created_at=r.created_at,
                    actor=r.actor,
                    policy=r.policy,
                    decision=r.decision,
                    report=r.report,
                )
                for r in session.scalars(stmt)
            ]
