"""``GET /monitoring/audit``: the audit log, newest first, one page at a time.

Pages are keyset pages on the entry id (``before`` = the ``next_before`` of the previous
page), so a page costs the same however deep it is, and entries written meanwhile neither
shift nor repeat the ones already read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from nexus_ml.service.database import Database
from nexus_ml.storage.operations import MAX_AUDIT_PAGE

__all__ = ["MAX_AUDIT_PAGE", "AuditEntryOut", "AuditPage", "AuditViews"]


class AuditEntryOut(BaseModel):
    """One audit entry: who (key fingerprint, ``cli:<user>`` or ``service``) did what to what."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any] | None = Field(
        description="before/after versions and ids; never a feature value or a key"
    )


class AuditPage(BaseModel):
    """A page of entries and the ``before`` of the next one (null: this is the last page)."""

    entries: list[AuditEntryOut]
    next_before: int | None


class AuditViews:
    """Reads the audit log for the API."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def page(
        self,
        *,
        limit: int,
        before: int | None = None,
        action: str | None = None,
        target: str | None = None,
        actor: str | None = None,
    ) -> AuditPage:
        """At most ``limit`` entries with ids below ``before`` matching every filter given."""
        store = self._db.store
        # One more than asked: whether it exists says whether there is a next page.
        rows = await self._db.run(
            store.list_audit,
            limit=limit + 1,
            before=before,
            action=action,
            target=target,
            actor=actor,
        )
        page = rows[:limit]
        return AuditPage(
            entries=[
                AuditEntryOut(
                    id=r.id,
                    at=r.at,
                    actor=r.actor,
                    action=r.action,
                    target=r.target,
                    details=r.details,
                )
                for r in page
            ],
            next_before=page[-1].id if len(rows) > limit else None,
        )
